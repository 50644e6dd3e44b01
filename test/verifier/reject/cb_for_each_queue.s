# kind: uprobe
# map: queue 0 8 16
# expect: cannot pass map_type
lddw %r1, map_idx 0
lddw %r2, func cb
mov %r3, 0
mov %r4, 0
call 164
exit
cb:
mov %r0, 0
exit
