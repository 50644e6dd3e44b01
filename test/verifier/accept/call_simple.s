# kind: uprobe
mov %r1, 3
call local f
exit
f:
mov %r0, %r1
add %r0, 1
exit
