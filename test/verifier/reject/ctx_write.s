# kind: uprobe
# expect: invalid bpf_context access off=80 size=8
stdw [%r1+80], 0
mov %r0, 0
exit
