# kind: uprobe
# expect: R2 min value is negative
ldxdw %r2, [%r1+112]
mov %r1, %r10
add %r1, -16
mov %r3, 0
call 112
exit
