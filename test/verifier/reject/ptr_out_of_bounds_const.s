# kind: uprobe
# expect: makes fp pointer be out of bounds
mov %r2, %r10
lddw %r3, 0x40000000
add %r2, %r3
mov %r0, 0
exit
