# kind: uprobe
# map: ringbuf 0 0 4096
# expect: invalid access to memory, mem_size=16 off=16 size=8
lddw %r1, map_idx 0
mov %r2, 16
mov %r3, 0
call 131
jeq %r0, 0, out
stdw [%r0+16], 1
mov %r1, %r0
mov %r2, 0
call 132
out:
mov %r0, 0
exit
