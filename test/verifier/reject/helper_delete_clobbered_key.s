# a helper call clobbers r1-r5: the map pointer is gone
# kind: uprobe
# map: array 4 8 16
# expect: R1 !read_ok
stw [%r10-4], 0
lddw %r1, map_idx 0
mov %r2, %r10
add %r2, -4
call 5
call 3
exit
