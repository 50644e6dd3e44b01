# kind: uprobe
# expect: R0 !read_ok
call local f
exit
f:
exit
