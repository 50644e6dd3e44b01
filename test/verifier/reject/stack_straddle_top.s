# kind: uprobe
# expect: invalid stack off=-2 size=4
stw [%r10-2], 0
mov %r0, 0
exit
