# kind: uprobe
# expect: invalid indirect read from stack
# kernel: userspace stricter on uninitialised stack
mov %r1, %r10
add %r1, -8
mov %r2, 8
call 6
exit
