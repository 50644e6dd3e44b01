# reads pt_regs->orig_ax
# kind: uprobe
ldxdw %r0, [%r1+120]
exit
