# kind: uprobe
# expect: pointer arithmetic with neg operator prohibited
# kernel: userspace stricter on pointer leaks
mov %r2, %r10
neg %r2
mov %r0, 0
exit
