# kind: uprobe
# expect: expected=func
mov %r1, 10
mov %r2, 0
mov %r3, 0
mov %r4, 0
call 181
exit
