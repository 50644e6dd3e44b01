# reads pt_regs->ss
# kind: uprobe
ldxdw %r0, [%r1+160]
exit
