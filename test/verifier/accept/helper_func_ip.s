# kind: uprobe
call 173
exit
