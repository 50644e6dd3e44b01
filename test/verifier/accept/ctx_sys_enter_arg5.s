# kind: syscall_enter
ldxdw %r0, [%r1+56]
exit
