# narrow aligned ctx read
# kind: uprobe
ldxw %r0, [%r1+164]
exit
