# kind: uprobe
# expect: R5 !read_ok
mov %r0, %r5
exit
