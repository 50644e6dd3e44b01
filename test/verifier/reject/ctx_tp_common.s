# kind: syscall_enter
# expect: invalid bpf_context access off=0 size=8
ldxdw %r0, [%r1+0]
exit
