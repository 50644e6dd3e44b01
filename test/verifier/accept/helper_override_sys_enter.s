# kind: syscall_enter
# opts: override
# kernel: userspace allows override_return on sys_enter
mov %r2, -13
call 58
mov %r0, 0
exit
