# kind: uprobe
mov %r0, -9
sdiv %r0, 2
exit
