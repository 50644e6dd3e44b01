# kind: uprobe
# map: hash 4 8 64
# expect: invalid access to map value, value_size=8 off=4 size=8
stw [%r10-4], 0
mov %r2, %r10
add %r2, -4
lddw %r1, map_idx 0
call 1
jeq %r0, 0, out
stdw [%r0+4], 0
out:
mov %r0, 0
exit
