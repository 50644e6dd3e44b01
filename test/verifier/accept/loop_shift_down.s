# log2: ends because r0 is bounded
# kind: uprobe
ldxdw %r1, [%r1+112]
mov %r0, 0
loop:
jle %r1, 1, done
rsh %r1, 1
add %r0, 1
jlt %r0, 63, loop
done:
exit
