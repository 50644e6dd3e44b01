# kind: uprobe
# map: hash 4 8 64
# expect: direct value access
lddw %r1, map_idx_value 0+0
mov %r0, 0
exit
