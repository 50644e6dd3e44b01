# kind: uprobe
# expect: invalid read from stack off -8+0 size 8
# kernel: userspace stricter on uninitialised stack
ldxdw %r0, [%r10-8]
exit
