# kind: uprobe
# map: hash 4 8 64
# expect: pointer arithmetic on map_ptr prohibited
lddw %r1, map_idx 0
add %r1, 8
mov %r0, 0
exit
