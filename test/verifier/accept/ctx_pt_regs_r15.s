# reads pt_regs->r15
# kind: uprobe
ldxdw %r0, [%r1+0]
exit
