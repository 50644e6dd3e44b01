# kind: uprobe
# expect: R11 is invalid
mov %r11, 0
mov %r0, 0
exit
