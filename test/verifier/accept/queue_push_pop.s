# pop writes the uninitialised value buffer
# kind: uprobe
# map: queue 0 4 8
stw [%r10-4], 3
lddw %r1, map_idx 0
mov %r2, %r10
add %r2, -4
mov %r3, 0
call 87
lddw %r1, map_idx 0
mov %r2, %r10
add %r2, -8
call 88
ldxw %r0, [%r10-8]
exit
