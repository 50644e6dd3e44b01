# kind: uprobe
# map: perf 4 4 2
stdw [%r10-8], 7
lddw %r2, map_idx 0
lddw %r3, 0xffffffff
mov %r4, %r10
add %r4, -8
mov %r5, 8
call 25
exit
