# kind: uprobe
# map: hash 4 8 64
# expect: map index 3 out of range
lddw %r1, map_idx 3
mov %r0, 0
exit
