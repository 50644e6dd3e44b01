# each frame has its own 512 bytes; 32+256 combined
# kind: uprobe
mov %r1, 5
call local f
exit
f:
stxdw [%r10-256], %r1
ldxdw %r0, [%r10-256]
exit
