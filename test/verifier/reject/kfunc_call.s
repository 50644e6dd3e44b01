# kind: uprobe
# expect: kernel function calls are not supported
call runtime 5
exit
