# kind: uprobe
# map: stack_trace 4 1016 64
lddw %r2, map_idx 0
mov %r3, 256
call 27
exit
