# kind: uprobe
# expect: invalid stack off=-520 size=8
stdw [%r10-520], 0
mov %r0, 0
exit
