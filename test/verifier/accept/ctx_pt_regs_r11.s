# reads pt_regs->r11
# kind: uprobe
ldxdw %r0, [%r1+48]
exit
