# kind: uprobe
# expect: jump out of range
ja -5
mov %r0, 0
exit
