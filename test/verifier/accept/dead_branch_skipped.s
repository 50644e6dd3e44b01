# a branch the constants rule out is never explored
# kind: uprobe
mov %r1, 5
jgt %r1, 10, bad
mov %r0, 0
exit
bad:
ldxdw %r0, [%r2+0]
exit
