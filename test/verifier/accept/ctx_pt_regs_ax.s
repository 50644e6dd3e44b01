# reads pt_regs->ax
# kind: uprobe
ldxdw %r0, [%r1+80]
exit
