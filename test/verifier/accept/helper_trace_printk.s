# kind: uprobe
stw [%r10-8], 0x0a6968
mov %r1, %r10
add %r1, -8
mov %r2, 4
call 6
exit
