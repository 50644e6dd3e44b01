# kind: uprobe
# expect: infinite loop detected
call 7
l:
mov %r1, 1
jne %r0, 5, l
mov %r0, 0
exit
