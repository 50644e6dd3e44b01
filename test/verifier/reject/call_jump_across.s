# kind: uprobe
# expect: jump out of range
mov %r0, 0
call local f
jeq %r0, 0, g
exit
f:
g:
mov %r0, 0
exit
