# kind: uprobe
# expect: combined stack size of the call chain is 544
# kernel: kernel private stacks lift the combined stack limit
stdw [%r10-512], 0
call local f
exit
f:
stdw [%r10-8], 0
mov %r0, 0
exit
