# store then load the same stack bytes
# kind: uprobe
stb [%r10-512], 7
ldxb %r0, [%r10-512]
exit
