# kind: raw_tp
ldxdw %r0, [%r1+0]
ldxdw %r2, [%r1+8]
add %r0, %r2
exit
