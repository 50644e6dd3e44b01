# a key may live in another map's value
# kind: uprobe
# map: array 4 8 4
# map: hash 4 8 16
stw [%r10-4], 0
mov %r2, %r10
add %r2, -4
lddw %r1, map_idx 0
call 1
jeq %r0, 0, out
mov %r2, %r0
lddw %r1, map_idx 1
call 1
out:
mov %r0, 0
exit
