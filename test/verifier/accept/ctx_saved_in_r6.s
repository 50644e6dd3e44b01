# r6 survives a helper call
# kind: uprobe
mov %r6, %r1
call 5
ldxdw %r0, [%r6+0]
exit
