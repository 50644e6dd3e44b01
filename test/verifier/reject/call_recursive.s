# kind: uprobe
# expect: recursive call
call local f
exit
f:
call local f
exit
