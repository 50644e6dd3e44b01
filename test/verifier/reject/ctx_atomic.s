# kind: uprobe
# expect: BPF_ATOMIC stores into R1 ctx is not allowed
mov %r2, 1
lock add [%r1+0], %r2
mov %r0, 0
exit
