# kind: uretprobe
# kernel: userspace offers helpers the kernel keeps from tracing programs
mov %r2, %r10
add %r2, -8
call 184
ldxdw %r0, [%r10-8]
exit
