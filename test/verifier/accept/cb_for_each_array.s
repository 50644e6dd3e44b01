# kind: uprobe
# kernel: kernel needs BTF func_info for callbacks
# map: array 4 8 16
# bpf_for_each_map_elem: the callback reads the key and writes the value
lddw %r1, map_idx 0
lddw %r2, func cb
mov %r3, 0
mov %r4, 0
call 164
exit
cb:
ldxw %r1, [%r2+0]
stxdw [%r3+0], %r1
mov %r0, 0
exit
