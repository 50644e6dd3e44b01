# kind: uprobe
# map: hash 4 8 64
# expect: invalid indirect read from stack R2 off -4+0 size 4
# kernel: userspace stricter on uninitialised stack
lddw %r1, map_idx 0
mov %r2, %r10
add %r2, -4
call 1
mov %r0, 0
exit
