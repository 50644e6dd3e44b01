# kind: syscall_exit
ldxdw %r0, [%r1+16]
exit
