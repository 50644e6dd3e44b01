# kind: raw_tp
# expect: invalid bpf_context access off=16 size=8
# kernel: kernel checks tracepoint context bounds at attach
ldxdw %r0, [%r1+16]
exit
