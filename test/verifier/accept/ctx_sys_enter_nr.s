# kind: syscall_enter
ldxw %r0, [%r1+8]
exit
