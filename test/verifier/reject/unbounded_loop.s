# kind: uprobe
# expect: too large
call 7
mov %r1, 0
l:
add %r1, 1
jlt %r1, %r0, l
mov %r0, 0
exit
