# Longest Collatz chain for a start value below the limit in the context
# (a little-endian u64 at [r1+0]); returns start << 32 | chain length.
ldxdw %r6, [%r1+0]
mov %r7, 1          # best start
mov %r8, 0          # best length
mov %r2, 1          # candidate start
next:
mov %r3, %r2        # x
mov %r4, 0          # steps
step:
jeq %r3, 1, done
mov %r5, %r3
and %r5, 1
jeq %r5, 0, even
mul %r3, 3
add %r3, 1
add %r4, 1
ja step
even:
rsh %r3, 1
add %r4, 1
ja step
done:
jle %r4, %r8, skip
mov %r8, %r4
mov %r7, %r2
skip:
add %r2, 1
jlt %r2, %r6, next
mov %r0, %r7
lsh %r0, 32
or %r0, %r8
exit
