# kind: uprobe
# expect: invalid bpf_context access off=164 size=8
ldxdw %r0, [%r1+164]
exit
