# kind: uprobe
# expect: invalid zero-sized read
mov %r1, %r10
add %r1, -16
mov %r2, 0
call 16
exit
