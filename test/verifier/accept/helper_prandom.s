# kind: uprobe
call 7
and %r0, 3
exit
