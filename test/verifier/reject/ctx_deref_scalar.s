# a register value read from pt_regs is a number, not a pointer
# kind: uprobe
# expect: R1 invalid mem access 'scalar'
ldxdw %r1, [%r1+112]
ldxdw %r0, [%r1+0]
exit
