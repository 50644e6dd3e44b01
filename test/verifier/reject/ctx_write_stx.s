# kind: uprobe
# expect: the context is read-only
mov %r2, 1
stxdw [%r1+0], %r2
mov %r0, 0
exit
