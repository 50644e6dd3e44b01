# kind: uprobe
# map: hash 4 8 64
# expect: R1 invalid mem access 'map_ptr'
# kernel: kernel-only map pointer access
lddw %r1, map_idx 0
ldxdw %r0, [%r1+0]
exit
