# kind: uprobe
# expect: unsupported lddw pseudo source
lddw %r1, map_fd 3
mov %r0, 0
exit
