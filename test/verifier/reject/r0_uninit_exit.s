# kind: uprobe
# expect: R0 !read_ok
exit
