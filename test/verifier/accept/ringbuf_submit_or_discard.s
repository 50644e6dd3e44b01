# every path submits or discards
# kind: uprobe
# map: ringbuf 0 0 4096
mov %r6, %r1
lddw %r1, map_idx 0
mov %r2, 8
mov %r3, 0
call 131
jeq %r0, 0, out
mov %r7, %r0
ldxdw %r1, [%r6+112]
stxdw [%r7+0], %r1
mov %r1, %r7
mov %r2, 0
jeq %r1, 0, out
ldxdw %r3, [%r6+104]
jeq %r3, 0, drop
call 132
ja out
drop:
call 133
out:
mov %r0, 0
exit
