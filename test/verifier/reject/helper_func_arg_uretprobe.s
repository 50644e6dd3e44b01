# kind: uretprobe
# expect: cannot use helper bpf_get_func_arg
mov %r2, 0
mov %r3, %r10
add %r3, -8
call 183
exit
