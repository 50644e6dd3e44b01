# kind: uprobe
# expect: jump into the middle of ldimm64
ja +1
lddw %r0, 5
exit
