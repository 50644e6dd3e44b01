# kind: uprobe
# expect: R1 invalid mem access 'scalar'
mov %r1, 4096
ldxdw %r0, [%r1+0]
exit
