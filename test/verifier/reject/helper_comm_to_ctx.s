# kind: uprobe
# expect: R1 type=ctx expected=fp, map_value, ringbuf_mem
mov %r2, 16
call 16
exit
