# kind: uprobe
# expect: R6 !read_ok
mov %r0, %r6
exit
