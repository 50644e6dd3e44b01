# kind: uprobe
# expect: invalid indirect access to stack R1 off=-8 size=16
mov %r1, %r10
add %r1, -8
mov %r2, 16
mov %r3, 0
call 112
mov %r0, 0
exit
