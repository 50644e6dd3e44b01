# kind: uprobe
# map: array 4 8 1
# expect: direct value offset of 16 is not allowed
lddw %r1, map_idx_value 0+16
mov %r0, 0
exit
