# kind: uprobe
stdw [%r10-8], 1
mov %r1, 2
lock xchg [%r10-8], %r1
mov %r0, 2
mov %r2, 3
lock cmpxchg [%r10-8], %r2
exit
