# kind: uprobe
mov %r1, 0xff
movsx864 %r0, %r1
exit
