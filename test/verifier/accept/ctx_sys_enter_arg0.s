# kind: syscall_enter
ldxdw %r0, [%r1+16]
exit
