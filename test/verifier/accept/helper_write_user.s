# kind: uprobe
# opts: write_user
# kernel: userspace allows probe_write_user when enabled
stdw [%r10-8], 0
ldxdw %r1, [%r1+112]
mov %r2, %r10
add %r2, -8
mov %r3, 8
call 36
exit
