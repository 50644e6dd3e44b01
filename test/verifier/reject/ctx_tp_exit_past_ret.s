# kind: syscall_exit
# expect: invalid bpf_context access off=24 size=8
# kernel: kernel checks tracepoint context bounds at attach
ldxdw %r0, [%r1+24]
exit
