# a size bounded with &= may be zero for *_OR_ZERO
# kind: uprobe
ldxdw %r3, [%r1+112]
ldxdw %r2, [%r1+104]
and %r2, 31
mov %r1, %r10
add %r1, -32
call 112
mov %r0, 0
exit
