# kind: uprobe
# opts: override
# expect: R1 type=fp expected=ctx
mov %r1, %r10
mov %r2, -12
call 58
mov %r0, 0
exit
