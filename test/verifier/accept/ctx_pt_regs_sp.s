# reads pt_regs->sp
# kind: uprobe
ldxdw %r0, [%r1+152]
exit
