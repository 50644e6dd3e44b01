# narrow aligned ctx read
# kind: uprobe
ldxh %r0, [%r1+166]
exit
