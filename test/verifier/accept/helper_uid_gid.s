# kind: uprobe
call 15
exit
