# store then load the same stack bytes
# kind: uprobe
stw [%r10-64], 7
ldxw %r0, [%r10-64]
exit
