# the helper initialises the stack it writes
# kind: uprobe
mov %r3, %r1
ldxdw %r3, [%r3+112]
mov %r1, %r10
add %r1, -32
mov %r2, 32
call 112
ldxdw %r0, [%r10-32]
exit
