# lookup, NULL check, read
# kind: uprobe
# map: array 4 8 16
stw [%r10-4], 0
mov %r2, %r10
add %r2, -4
lddw %r1, map_idx 0
call 1
jeq %r0, 0, out
ldxdw %r0, [%r0+0]
exit
out:
exit
