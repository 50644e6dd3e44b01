# pointer - pointer is a number for root
# kind: uprobe
mov %r2, %r10
add %r2, -8
mov %r0, %r10
sub %r0, %r2
exit
