# kind: uprobe
# expect: R3 !read_ok
mov %r0, %r3
exit
