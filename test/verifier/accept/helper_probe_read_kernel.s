# kind: uprobe
ldxdw %r3, [%r1+112]
mov %r1, %r10
add %r1, -8
mov %r2, 8
call 113
exit
