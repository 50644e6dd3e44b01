# kind: uprobe
# map: hash 4 8 64
# expect: cannot pass map_type 1 into func bpf_perf_event_output#25
stdw [%r10-8], 7
lddw %r2, map_idx 0
mov %r3, 0
mov %r4, %r10
add %r4, -8
mov %r5, 8
call 25
exit
