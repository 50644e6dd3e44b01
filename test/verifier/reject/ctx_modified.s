# ctx fields are read through the unmodified pointer, as in the kernel
# kind: uprobe
# expect: dereference of modified ctx ptr R1 off=16
add %r1, 16
ldxdw %r0, [%r1+8]
exit
