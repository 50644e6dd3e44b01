# the NULL check covers spilled copies
# kind: uprobe
# map: hash 4 8 64
stw [%r10-4], 0
mov %r2, %r10
add %r2, -4
lddw %r1, map_idx 0
call 1
stxdw [%r10-16], %r0
jeq %r0, 0, out
ldxdw %r1, [%r10-16]
ldxdw %r0, [%r1+0]
exit
out:
exit
