# uninitialised read on one branch only
# kind: uprobe
# expect: R3 !read_ok
ldxdw %r0, [%r1+0]
jeq %r0, 1, x
exit
x:
mov %r0, %r3
exit
