# reads pt_regs->r13
# kind: uprobe
ldxdw %r0, [%r1+16]
exit
