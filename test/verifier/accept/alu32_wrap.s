# kind: uprobe
mov32 %r1, -1
add32 %r1, 2
mov %r0, %r1
exit
