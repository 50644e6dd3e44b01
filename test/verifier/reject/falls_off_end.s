# kind: uprobe
# expect: last insn is not an exit or jmp
mov %r0, 0
