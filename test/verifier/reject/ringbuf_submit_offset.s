# kind: uprobe
# map: ringbuf 0 0 4096
# expect: must have zero offset when passed to release func
lddw %r1, map_idx 0
mov %r2, 16
mov %r3, 0
call 131
jeq %r0, 0, out
mov %r1, %r0
add %r1, 8
mov %r2, 0
call 132
out:
mov %r0, 0
exit
