# usdt.bpf.h: a register of pt_regs at a variable offset, read with probe_read_kernel
# kind: uprobe
ldxdw %r3, [%r1+112]
and %r3, 120
add %r3, %r1
mov %r1, %r10
add %r1, -8
mov %r2, 8
call 113
exit
