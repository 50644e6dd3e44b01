# kind: uprobe
# map: hash 4 8 64
# expect: R2 type=scalar expected=fp, map_value
lddw %r1, map_idx 0
mov %r2, 0
call 1
mov %r0, 0
exit
