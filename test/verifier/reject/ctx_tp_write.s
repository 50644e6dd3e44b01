# kind: syscall_enter
# expect: invalid bpf_context access
stdw [%r1+16], 0
mov %r0, 0
exit
