# kind: uprobe
# kernel: userspace offers helpers the kernel keeps from tracing programs
mov %r2, 1
mov %r3, %r10
add %r3, -8
call 183
ldxdw %r0, [%r10-8]
exit
