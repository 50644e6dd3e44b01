# kind: uprobe
# map: hash 8 8 64
# expect: read-only
lddw %r1, map_idx 0
lddw %r2, func cb
mov %r3, 0
mov %r4, 0
call 164
exit
cb:
stdw [%r2+0], 1
mov %r0, 0
exit
