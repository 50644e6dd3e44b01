# kind: uprobe
# expect: R2 !read_ok
mov %r0, %r2
exit
