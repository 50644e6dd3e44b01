# kind: uprobe
# expect: frame pointer is read only
add %r10, 8
mov %r0, 0
exit
