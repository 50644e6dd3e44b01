# kind: syscall_enter
ldxdw %r0, [%r1+48]
exit
