# store then load the same stack bytes
# kind: uprobe
stb [%r10-64], 7
ldxb %r0, [%r10-64]
exit
