# reads pt_regs->r9
# kind: uprobe
ldxdw %r0, [%r1+64]
exit
