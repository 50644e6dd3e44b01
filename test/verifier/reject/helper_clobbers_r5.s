# kind: uprobe
# expect: R5 !read_ok
mov %r5, 1
call 5
mov %r0, %r5
exit
