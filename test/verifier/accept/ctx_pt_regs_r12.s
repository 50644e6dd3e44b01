# reads pt_regs->r12
# kind: uprobe
ldxdw %r0, [%r1+24]
exit
