# kind: uprobe
# map: array 4 8 1 rdonly
# expect: write into map forbidden
lddw %r1, map_idx_value 0+0
stdw [%r1+0], 1
mov %r0, 0
exit
