# a checked map value is never NULL, so the second test has one way out
# kind: uprobe
# map: hash 4 8 64
stw [%r10-4], 0
mov %r2, %r10
add %r2, -4
lddw %r1, map_idx 0
call 1
jeq %r0, 0, out
jne %r0, 0, ok
ldxdw %r0, [%r9+0]
exit
ok:
mov %r0, 0
out:
exit
