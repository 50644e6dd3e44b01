# kind: syscall_enter
ldxdw %r0, [%r1+24]
exit
