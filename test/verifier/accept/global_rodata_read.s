# kind: uprobe
# map: array 4 8 1 rdonly
lddw %r1, map_idx_value 0+0
ldxw %r0, [%r1+4]
exit
