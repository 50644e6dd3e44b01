# kind: syscall_enter
ldxdw %r0, [%r1+32]
exit
