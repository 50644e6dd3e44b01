# kind: uprobe
# expect: variable stack access prohibited
# kernel: userspace stricter on variable stack access
ldxdw %r2, [%r1+112]
and %r2, 7
mov %r3, %r10
add %r3, -16
add %r3, %r2
stb [%r3+0], 0
mov %r0, 0
exit
