# bounded loop, proved to end by exploration
# kind: uprobe
mov %r0, 0
mov %r1, 0
loop:
add %r0, %r1
add %r1, 1
jlt %r1, 4, loop
exit
