# kind: uprobe
# expect: R4 !read_ok
mov %r0, %r4
exit
