# stack writes in a loop, the offset known in each iteration
# kind: uprobe
mov %r1, 0
loop:
mov %r2, %r10
add %r2, -64
mov %r3, %r1
lsh %r3, 3
add %r2, %r3
stdw [%r2+0], 0
add %r1, 1
jlt %r1, 8, loop
ldxdw %r0, [%r10-64]
exit
