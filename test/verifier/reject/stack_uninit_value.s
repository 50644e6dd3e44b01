# kind: uprobe
# map: hash 4 8 64
# expect: invalid indirect read from stack R3
# kernel: userspace stricter on uninitialised stack
stw [%r10-4], 0
lddw %r1, map_idx 0
mov %r2, %r10
add %r2, -4
mov %r3, %r10
add %r3, -16
mov %r4, 0
call 2
exit
