# kind: uprobe
mov %r2, %r10
add %r2, -16
stdw [%r2+8], 1
ldxdw %r0, [%r10-8]
exit
