# checking one lookup does not cover another
# kind: uprobe
# map: hash 4 8 64
# expect: R6 invalid mem access 'map_value_or_null'
stw [%r10-4], 0
mov %r2, %r10
add %r2, -4
lddw %r1, map_idx 0
call 1
mov %r6, %r0
stw [%r10-4], 0
mov %r2, %r10
add %r2, -4
lddw %r1, map_idx 0
call 1
jeq %r0, 0, out
ldxdw %r0, [%r6+0]
exit
out:
mov %r0, 0
exit
