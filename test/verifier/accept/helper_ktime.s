# kind: uprobe
call 5
mov %r6, %r0
call 125
sub %r0, %r6
exit
