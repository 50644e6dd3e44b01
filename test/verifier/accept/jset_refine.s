# kind: uprobe
ldxdw %r0, [%r1+112]
jset %r0, 0xfffffff0, out
exit
out:
mov %r0, 0
exit
