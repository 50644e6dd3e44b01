# kind: uprobe
# map: array 4 128 1
# expect: R0 unbounded memory access
mov %r6, %r1
stw [%r10-4], 0
mov %r2, %r10
add %r2, -4
lddw %r1, map_idx 0
call 1
jeq %r0, 0, out
ldxdw %r2, [%r6+112]
jslt %r2, 0, out
add %r0, %r2
ldxb %r0, [%r0+0]
out:
mov %r0, 0
exit
