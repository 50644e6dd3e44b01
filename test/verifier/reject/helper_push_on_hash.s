# kind: uprobe
# map: hash 4 8 64
# expect: cannot pass map_type 1 into func bpf_map_push_elem#87
stdw [%r10-8], 7
lddw %r1, map_idx 0
mov %r2, %r10
add %r2, -8
mov %r3, 0
call 87
exit
