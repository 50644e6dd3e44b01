# kind: uprobe
stb [%r10-1], 0
stb [%r10-2], 0
ldxh %r0, [%r10-2]
exit
