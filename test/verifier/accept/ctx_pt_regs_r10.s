# reads pt_regs->r10
# kind: uprobe
ldxdw %r0, [%r1+56]
exit
