# reads pt_regs->cx
# kind: uprobe
ldxdw %r0, [%r1+88]
exit
