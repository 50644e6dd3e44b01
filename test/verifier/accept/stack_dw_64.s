# store then load the same stack bytes
# kind: uprobe
stdw [%r10-64], 7
ldxdw %r0, [%r10-64]
exit
