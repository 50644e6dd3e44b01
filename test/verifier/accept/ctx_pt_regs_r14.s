# reads pt_regs->r14
# kind: uprobe
ldxdw %r0, [%r1+8]
exit
