# kind: uprobe
# expect: R9 !read_ok
mov %r0, %r9
exit
