# kind: uprobe
# map: hash 4 8 64
# expect: R2 type=map_value_or_null expected=fp, map_value
stw [%r10-4], 0
mov %r2, %r10
add %r2, -4
lddw %r1, map_idx 0
call 1
mov %r2, %r0
lddw %r1, map_idx 0
call 1
mov %r0, 0
exit
