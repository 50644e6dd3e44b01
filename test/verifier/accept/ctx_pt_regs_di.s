# reads pt_regs->di
# kind: uprobe
ldxdw %r0, [%r1+112]
exit
