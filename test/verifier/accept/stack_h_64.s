# store then load the same stack bytes
# kind: uprobe
sth [%r10-64], 7
ldxh %r0, [%r10-64]
exit
