# kind: syscall_enter
ldxdw %r0, [%r1+40]
exit
