# reads pt_regs->cs
# kind: uprobe
ldxdw %r0, [%r1+136]
exit
