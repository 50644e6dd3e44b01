# kind: uprobe
# map: stack_trace 4 1016 64
# expect: dereference of modified ctx ptr R1 off=8
add %r1, 8
lddw %r2, map_idx 0
mov %r3, 0
call 27
exit
