# r6-r9 are the caller's own (the callee's r6 is a different register set)
# kind: uprobe
mov %r6, 11
call local f
mov %r0, %r6
exit
f:
mov %r6, 1
mov %r0, 0
exit
