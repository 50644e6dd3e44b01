# kind: uprobe
mov %r1, 6
mul %r1, 7
div %r1, 2
mod %r1, 8
lsh %r1, 4
rsh %r1, 2
xor %r1, 1
or %r1, 2
neg %r1
mov %r0, %r1
exit
