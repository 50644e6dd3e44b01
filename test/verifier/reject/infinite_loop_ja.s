# kind: uprobe
# expect: infinite loop detected
mov %r0, 0
l:
ja l
