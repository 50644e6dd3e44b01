# kind: uprobe
# map: ringbuf 0 0 4096
# expect: invalid indirect read from stack R2 off -8+0 size 8
# kernel: userspace stricter on uninitialised stack
lddw %r1, map_idx 0
mov %r2, %r10
add %r2, -8
mov %r3, 8
mov %r4, 0
call 130
exit
