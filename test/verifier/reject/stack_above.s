# kind: uprobe
# expect: invalid stack off=0 size=8
stdw [%r10+0], 0
mov %r0, 0
exit
