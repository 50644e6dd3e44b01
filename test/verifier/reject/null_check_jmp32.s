# a 32-bit compare is no NULL check
# kind: uprobe
# map: hash 4 8 64
# expect: invalid mem access 'map_value_or_null'
stw [%r10-4], 0
mov %r2, %r10
add %r2, -4
lddw %r1, map_idx 0
call 1
jeq32 %r0, 0, out
ldxdw %r0, [%r0+0]
exit
out:
mov %r0, 0
exit
