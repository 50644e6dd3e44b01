# kind: uprobe
# expect: invalid bpf_context access off=-8 size=8
ldxdw %r0, [%r1-8]
exit
