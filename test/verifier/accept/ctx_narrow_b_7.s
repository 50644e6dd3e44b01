# narrow aligned ctx read
# kind: uprobe
ldxb %r0, [%r1+7]
exit
