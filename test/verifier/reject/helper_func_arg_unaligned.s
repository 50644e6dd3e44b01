# kind: uprobe
# expect: 8-byte aligned
mov %r2, 0
mov %r3, %r10
add %r3, -12
call 183
exit
