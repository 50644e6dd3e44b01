# kind: uprobe
# map: hash 8 16 64 spinlock
# expect: Locking two bpf_spin_locks
stdw [%r10-8], 0
mov %r2, %r10
add %r2, -8
lddw %r1, map_idx 0
call 1
jeq %r0, 0, out
mov %r6, %r0
mov %r1, %r6
call 93
mov %r1, %r6
call 93
out:
mov %r0, 0
exit
