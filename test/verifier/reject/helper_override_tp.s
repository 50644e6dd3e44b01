# kind: syscall_exit
# opts: override
# expect: cannot use helper bpf_override_return
mov %r2, -12
call 58
mov %r0, 0
exit
