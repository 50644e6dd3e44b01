# kind: uprobe
# map: ringbuf 0 0 4096
# expect: R0 invalid mem access 'ringbuf_mem_or_null'
lddw %r1, map_idx 0
mov %r2, 16
mov %r3, 0
call 131
stdw [%r0+0], 1
mov %r0, 0
exit
