# kind: uprobe
# kernel: userspace stricter on the frame a callback's ctx points into
# expect: invalid mem access
stxdw [%r10-16], %r1
stdw [%r10-8], 0
mov %r1, 4
lddw %r2, func cb
mov %r3, %r10
add %r3, -8
mov %r4, 0
call 181
ldxdw %r1, [%r10-16]
ldxdw %r0, [%r1+0]
exit
cb:
mov %r0, 0
exit
