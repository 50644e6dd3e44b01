# kind: uprobe
# map: ringbuf 0 0 4096
# expect: R1 type=scalar expected=map_ptr
mov %r1, 0
lddw %r2, map_idx 0
mov %r3, %r10
add %r3, -8
mov %r4, 8
mov %r5, 0
call 130
exit
