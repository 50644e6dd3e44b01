# kind: uprobe
mov %r1, 1
call local a
exit
a:
call local b
add %r0, 1
exit
b:
call local c
add %r0, 1
exit
c:
mov %r0, 7
exit
