# kind: uprobe
# kernel: userspace offers helpers the kernel keeps from tracing programs
call 160
exit
