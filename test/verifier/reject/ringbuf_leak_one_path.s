# kind: uprobe
# map: ringbuf 0 0 4096
# expect: Unreleased reference
mov %r6, %r1
lddw %r1, map_idx 0
mov %r2, 16
mov %r3, 0
call 131
jeq %r0, 0, out
ldxdw %r1, [%r6+112]
jeq %r1, 0, out
mov %r1, %r0
mov %r2, 0
call 132
out:
mov %r0, 0
exit
