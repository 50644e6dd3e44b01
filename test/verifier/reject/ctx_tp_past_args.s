# kind: syscall_enter
# expect: invalid bpf_context access off=64 size=8
# kernel: kernel checks tracepoint context bounds at attach
ldxdw %r0, [%r1+64]
exit
