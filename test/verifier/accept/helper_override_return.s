# kind: uprobe
# opts: override
# kernel: userspace allows override_return on uprobes
mov %r2, -12
call 58
mov %r0, 0
exit
