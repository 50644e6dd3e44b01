# index <= 128 lets the byte at 128 be read
# kind: uprobe
# map: array 4 128 1
# expect: invalid access to map value, value_size=128 off=0 size=1
mov %r6, %r1
stw [%r10-4], 0
mov %r2, %r10
add %r2, -4
lddw %r1, map_idx 0
call 1
jeq %r0, 0, out
ldxdw %r2, [%r6+112]
jgt %r2, 128, out
add %r0, %r2
ldxb %r0, [%r0+0]
out:
mov %r0, 0
exit
