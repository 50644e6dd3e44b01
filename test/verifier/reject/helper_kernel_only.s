# bpf_get_current_task has no meaning in a target
# kind: uprobe
# expect: invalid func unknown#26
call 26
exit
