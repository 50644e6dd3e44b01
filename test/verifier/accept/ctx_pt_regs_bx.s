# reads pt_regs->bx
# kind: uprobe
ldxdw %r0, [%r1+40]
exit
