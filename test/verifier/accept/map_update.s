# kind: uprobe
# map: hash 4 8 64
stw [%r10-4], 1
stdw [%r10-16], 9
lddw %r1, map_idx 0
mov %r2, %r10
add %r2, -4
mov %r3, %r10
add %r3, -16
mov %r4, 0
call 2
exit
