# kind: uprobe
# expect: expected=fp or NULL
mov %r1, 10
lddw %r2, func cb
mov %r3, 7
mov %r4, 0
call 181
exit
cb:
mov %r0, 0
exit
