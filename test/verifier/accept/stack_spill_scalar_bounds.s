# a spilled bounded scalar keeps its bounds
# kind: uprobe
# map: array 4 64 1
ldxdw %r2, [%r1+112]
and %r2, 7
stxdw [%r10-16], %r2
ldxdw %r3, [%r10-16]
lsh %r3, 3
lddw %r1, map_idx 0
stw [%r10-4], 0
mov %r2, %r10
add %r2, -4
stxdw [%r10-24], %r3
call 1
jeq %r0, 0, out
ldxdw %r3, [%r10-24]
add %r0, %r3
ldxdw %r0, [%r0+0]
exit
out:
mov %r0, 0
exit
