# reads pt_regs->r8
# kind: uprobe
ldxdw %r0, [%r1+72]
exit
