# kind: uprobe
# map: hash 4 8 64
# expect: R2 !read_ok
lddw %r1, map_idx 0
call 1
mov %r0, 0
exit
