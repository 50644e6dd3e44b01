# kind: uprobe
# map: stack 0 8 8
lddw %r1, map_idx 0
mov %r2, %r10
add %r2, -8
call 89
ldxdw %r0, [%r10-8]
exit
