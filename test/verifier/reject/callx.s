# kind: uprobe
# expect: BPF_CALL uses reserved fields
mov %r2, 0
call %r2
exit
