# kind: uprobe
# map: ringbuf 0 0 4096
lddw %r1, map_idx 0
mov %r2, 0
call 134
exit
