# 30 diamonds: pruning keeps this linear
# kind: uprobe
ldxdw %r2, [%r1+112]
mov %r0, 0
jeq %r2, 0, l0
add %r0, 1
l0:
jeq %r2, 1, l1
add %r0, 1
l1:
jeq %r2, 2, l2
add %r0, 1
l2:
jeq %r2, 3, l3
add %r0, 1
l3:
jeq %r2, 4, l4
add %r0, 1
l4:
jeq %r2, 5, l5
add %r0, 1
l5:
jeq %r2, 6, l6
add %r0, 1
l6:
jeq %r2, 7, l7
add %r0, 1
l7:
jeq %r2, 8, l8
add %r0, 1
l8:
jeq %r2, 9, l9
add %r0, 1
l9:
jeq %r2, 10, l10
add %r0, 1
l10:
jeq %r2, 11, l11
add %r0, 1
l11:
jeq %r2, 12, l12
add %r0, 1
l12:
jeq %r2, 13, l13
add %r0, 1
l13:
jeq %r2, 14, l14
add %r0, 1
l14:
jeq %r2, 15, l15
add %r0, 1
l15:
jeq %r2, 16, l16
add %r0, 1
l16:
jeq %r2, 17, l17
add %r0, 1
l17:
jeq %r2, 18, l18
add %r0, 1
l18:
jeq %r2, 19, l19
add %r0, 1
l19:
jeq %r2, 20, l20
add %r0, 1
l20:
jeq %r2, 21, l21
add %r0, 1
l21:
jeq %r2, 22, l22
add %r0, 1
l22:
jeq %r2, 23, l23
add %r0, 1
l23:
jeq %r2, 24, l24
add %r0, 1
l24:
jeq %r2, 25, l25
add %r0, 1
l25:
jeq %r2, 26, l26
add %r0, 1
l26:
jeq %r2, 27, l27
add %r0, 1
l27:
jeq %r2, 28, l28
add %r0, 1
l28:
jeq %r2, 29, l29
add %r0, 1
l29:
exit
