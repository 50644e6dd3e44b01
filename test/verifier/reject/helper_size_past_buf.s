# kind: uprobe
# expect: invalid indirect access to stack R1 off=-16 size=31
ldxdw %r2, [%r1+112]
and %r2, 31
mov %r1, %r10
add %r1, -16
mov %r3, 0
call 112
mov %r0, 0
exit
