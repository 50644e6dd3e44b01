# kind: uprobe
# map: hash 4 8 64
call local f
mov %r0, 0
exit
f:
stw [%r10-4], 0
mov %r2, %r10
add %r2, -4
lddw %r1, map_idx 0
call 1
jeq %r0, 0, out
ldxdw %r0, [%r0+0]
out:
exit
