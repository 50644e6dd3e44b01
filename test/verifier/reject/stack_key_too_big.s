# kind: uprobe
# map: hash 16 8 4
# expect: invalid indirect access to stack R2 off=-4 size=16
stw [%r10-4], 0
lddw %r1, map_idx 0
mov %r2, %r10
add %r2, -4
call 1
mov %r0, 0
exit
