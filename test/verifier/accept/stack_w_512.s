# store then load the same stack bytes
# kind: uprobe
stw [%r10-512], 7
ldxw %r0, [%r10-512]
exit
