# kind: uprobe
# expect: invalid func unknown#200
call 200
exit
