# return value
# kind: uretprobe
ldxdw %r0, [%r1+80]
exit
