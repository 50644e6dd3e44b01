# an index bounded before it scales into a map value
# kind: uprobe
# map: array 4 128 1
mov %r6, %r1
stw [%r10-4], 0
mov %r2, %r10
add %r2, -4
lddw %r1, map_idx 0
call 1
jeq %r0, 0, out
ldxdw %r2, [%r6+112]
jge %r2, 16, out
lsh %r2, 3
add %r0, %r2
ldxdw %r0, [%r0+0]
exit
out:
mov %r0, 0
exit
