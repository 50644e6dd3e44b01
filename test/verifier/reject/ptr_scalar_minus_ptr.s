# kind: uprobe
# expect: pointer arithmetic with -= operator prohibited
mov %r2, 8
sub %r2, %r10
mov %r0, 0
exit
