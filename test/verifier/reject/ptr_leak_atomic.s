# kind: uprobe
# expect: leaks addr into mem
# kernel: userspace stricter on pointer leaks
stdw [%r10-8], 0
mov %r1, %r10
lock add [%r10-8], %r1
mov %r0, 0
exit
