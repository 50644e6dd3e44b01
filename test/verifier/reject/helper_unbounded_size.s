# kind: uprobe
# expect: R2 unbounded memory access
ldxdw %r2, [%r1+112]
jslt %r2, 0, out
mov %r1, %r10
add %r1, -16
mov %r3, 0
call 112
out:
mov %r0, 0
exit
