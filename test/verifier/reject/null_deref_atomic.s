# kind: uprobe
# map: hash 4 8 64
# expect: R0 invalid mem access 'map_value_or_null'
stw [%r10-4], 0
mov %r2, %r10
add %r2, -4
lddw %r1, map_idx 0
call 1
mov %r1, 1
lock add [%r0+0], %r1
mov %r0, 0
exit
