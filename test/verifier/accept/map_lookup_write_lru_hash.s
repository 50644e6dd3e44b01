# lookup, NULL check (jne), write
# kind: uprobe
# map: lru_hash 4 8 64
stw [%r10-4], 0
mov %r2, %r10
add %r2, -4
lddw %r1, map_idx 0
call 1
jne %r0, 0, hit
mov %r0, 0
exit
hit:
stdw [%r0+0], 5
mov %r0, 0
exit
