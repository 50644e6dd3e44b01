# kind: uprobe
# expect: misaligned stack access off -12 size 8
stdw [%r10-12], 0
mov %r0, 0
exit
