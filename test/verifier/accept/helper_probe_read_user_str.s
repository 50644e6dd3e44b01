# kind: uprobe
ldxdw %r3, [%r1+112]
mov %r1, %r10
add %r1, -64
mov %r2, 64
call 114
exit
