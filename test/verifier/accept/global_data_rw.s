# .data through map_idx_value
# kind: uprobe
# map: array 4 16 1
lddw %r1, map_idx_value 0+8
ldxdw %r0, [%r1+0]
add %r0, 1
stxdw [%r1+0], %r0
exit
