# kind: uprobe
# map: ringbuf 0 0 4096
# expect: R2 is not a known constant
ldxdw %r2, [%r1+112]
and %r2, 63
lddw %r1, map_idx 0
mov %r3, 0
call 131
mov %r0, 0
exit
