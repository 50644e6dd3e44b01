# kind: uprobe
mov %r0, 0x1234
be16 %r0
le32 %r0
exit
