# reads pt_regs->bp
# kind: uprobe
ldxdw %r0, [%r1+32]
exit
