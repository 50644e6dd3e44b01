# a spilled ctx pointer is a ctx pointer again when filled
# kind: uprobe
stxdw [%r10-8], %r1
ldxdw %r2, [%r10-8]
ldxdw %r0, [%r2+0]
exit
