# kind: uprobe
# expect: frame pointer is read only
ldxdw %r10, [%r1+0]
mov %r0, 0
exit
