# kind: uprobe
call 8
exit
