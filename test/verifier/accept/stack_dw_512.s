# store then load the same stack bytes
# kind: uprobe
stdw [%r10-512], 7
ldxdw %r0, [%r10-512]
exit
