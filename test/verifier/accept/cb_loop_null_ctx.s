# kind: uprobe
# kernel: kernel needs BTF func_info for callbacks
# bpf_loop without a context; the callback stops at index 3
mov %r1, 100
lddw %r2, func cb
mov %r3, 0
mov %r4, 0
call 181
exit
cb:
mov %r0, 0
jne %r1, 3, out
mov %r0, 1
out:
exit
