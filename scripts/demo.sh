#!/usr/bin/env bash
# The README's first command: sets the machine up, builds bpfgraft and runs
# the main job. Today that is an eBPF program assembled and run in the
# interpreter; it becomes the live attach demo with the attach issue.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)" >/dev/null

echo "== samples/vm/collatz.s: longest Collatz chain for starts below 10000"
build/bin/bpfgraft-vm --ctx-u64 10000 samples/vm/collatz.s | tail -n 4
r0=$(build/bin/bpfgraft-vm --quiet --ctx-u64 10000 samples/vm/collatz.s | sed -n 's/^r0 = \([0-9]*\).*/\1/p')
echo "start $((r0 >> 32)) takes $((r0 & 0xffffffff)) steps to reach 1"
