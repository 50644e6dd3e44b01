# kind: uretprobe
# expect: the context is read-only
stdw [%r1+80], 0
mov %r0, 0
exit
