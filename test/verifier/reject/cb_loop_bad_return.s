# kind: uprobe
# expect: must return 0 or 1
mov %r1, 10
lddw %r2, func cb
mov %r3, 0
mov %r4, 0
call 181
exit
cb:
mov %r0, 2
exit
