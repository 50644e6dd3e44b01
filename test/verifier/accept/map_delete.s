# kind: uprobe
# map: hash 4 8 64
stw [%r10-4], 1
lddw %r1, map_idx 0
mov %r2, %r10
add %r2, -4
call 3
exit
