# kind: uprobe
# map: ringbuf 0 0 4096
# expect: cannot pass map_type 27 into func bpf_map_lookup_elem#1
stw [%r10-4], 0
lddw %r1, map_idx 0
mov %r2, %r10
add %r2, -4
call 1
mov %r0, 0
exit
