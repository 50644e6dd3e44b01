# kind: uprobe
# kernel: kernel needs BTF func_info for callbacks
# map: hash 8 8 64
# bpf_for_each_map_elem over a hash map, summing values into the caller's stack
stdw [%r10-8], 0
lddw %r1, map_idx 0
lddw %r2, func cb
mov %r3, %r10
add %r3, -8
mov %r4, 0
call 164
ldxdw %r0, [%r10-8]
exit
cb:
ldxdw %r5, [%r3+0]
ldxdw %r1, [%r4+0]
add %r1, %r5
stxdw [%r4+0], %r1
mov %r0, 0
exit
