# reads pt_regs->flags
# kind: uprobe
ldxdw %r0, [%r1+144]
exit
