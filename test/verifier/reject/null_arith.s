# kind: uprobe
# map: hash 4 8 64
# expect: pointer arithmetic on map_value_or_null prohibited
stw [%r10-4], 0
mov %r2, %r10
add %r2, -4
lddw %r1, map_idx 0
call 1
add %r0, 8
mov %r0, 0
exit
