# reads pt_regs->ip
# kind: uprobe
ldxdw %r0, [%r1+128]
exit
