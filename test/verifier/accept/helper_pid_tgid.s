# kind: uprobe
call 14
rsh %r0, 32
exit
