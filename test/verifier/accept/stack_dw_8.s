# store then load the same stack bytes
# kind: uprobe
stdw [%r10-8], 7
ldxdw %r0, [%r10-8]
exit
