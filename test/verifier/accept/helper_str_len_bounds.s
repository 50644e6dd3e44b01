# a *_str return value bounded by its size argument
# kind: uprobe
# map: ringbuf 0 0 4096
mov %r6, %r1
ldxdw %r3, [%r6+112]
mov %r1, %r10
add %r1, -64
mov %r2, 64
call 114
jsle %r0, 0, out
mov %r1, %r10
add %r1, -64
mov %r2, %r0
mov %r3, %r10
add %r3, -64
lddw %r1, map_idx 0
mov %r2, %r10
add %r2, -64
mov %r3, %r0
mov %r4, 0
call 130
out:
mov %r0, 0
exit
