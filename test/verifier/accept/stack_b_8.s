# store then load the same stack bytes
# kind: uprobe
stb [%r10-8], 7
ldxb %r0, [%r10-8]
exit
