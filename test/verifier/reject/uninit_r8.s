# kind: uprobe
# expect: R8 !read_ok
mov %r0, %r8
exit
