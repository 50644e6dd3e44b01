# reads pt_regs->dx
# kind: uprobe
ldxdw %r0, [%r1+96]
exit
