# kind: uprobe
mov %r0, -64
arsh %r0, 3
exit
