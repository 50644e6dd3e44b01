# reads pt_regs->si
# kind: uprobe
ldxdw %r0, [%r1+104]
exit
