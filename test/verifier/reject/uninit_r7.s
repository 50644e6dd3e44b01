# kind: uprobe
# expect: R7 !read_ok
mov %r0, %r7
exit
