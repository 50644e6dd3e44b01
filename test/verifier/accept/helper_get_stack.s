# kind: uprobe
mov %r2, %r10
add %r2, -64
mov %r3, 64
mov %r4, 256
call 67
exit
