# kind: uprobe
# map: hash 4 8 64
# expect: cannot pass map_type 1 into func bpf_tail_call#12
lddw %r2, map_idx 0
mov %r3, 0
call 12
mov %r0, 0
exit
