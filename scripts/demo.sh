#!/usr/bin/env bash
# The README's first command: sets the machine up, builds bpfgraft and runs
# the main job: attach the malloc sample to a running process, show what it
# counted, detach, and show that the process went on untouched; then run
# an unmodified libbpf tool (Debian's funclatency) with its BPF side in
# bpfgraft against the same process.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)" >/dev/null

work=$(mktemp -d /tmp/bpfgraft-demo.XXXXXX)
sock=$work/control.sock
server=""
victim=""
cleanup() {
	set +e
	[ -n "$victim" ] && kill "$victim" 2>/dev/null; [ -n "$victim" ] && wait "$victim" 2>/dev/null
	[ -n "$server" ] && kill "$server" 2>/dev/null; [ -n "$server" ] && wait "$server" 2>/dev/null
	rm -rf "$work"
}
trap cleanup EXIT

build/bin/bpfgraftd --socket "$sock" --foreground --cache-dir "$work/jitcache" >"$work/bpfgraftd.log" 2>&1 &
server=$!
for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.05; done
bpfgraft() { build/bin/bpfgraft --socket "$sock" "$@"; }

echo "== a running process that calls malloc() every 10 ms (it knows nothing of bpfgraft)"
build/bin/malloc-victim >"$work/victim.out" &
victim=$!
sleep 0.3
echo "pid $victim"

echo "== bpfgraft load build/bpf/malloc.bpf.o"
bpfgraft load build/bpf/malloc.bpf.o
echo "== bpfgraft attach $victim malloc   (no restart, no LD_PRELOAD)"
bpfgraft attach "$victim" malloc
sleep 2
echo "== bpfgraft map dump malloc_calls   (calls per pid, counted inside the process)"
bpfgraft map dump malloc_calls
echo "== bpfgraft map dump malloc_bytes"
bpfgraft map dump malloc_bytes
echo "== bpfgraft ps"
bpfgraft ps
echo "== bpfgraft detach $victim"
bpfgraft detach "$victim"
sleep 0.5
kill -0 "$victim" && echo "process $victim is still running; its last words:"
tail -n 2 "$work/victim.out"
echo "== the map keeps its data after detach"
bpfgraft map dump malloc_calls

echo "== an unmodified libbpf tool, its BPF side served by bpfgraft (no kernel BPF):"
echo "== bpfgraft attach $victim; bpfgraft run -- /usr/sbin/funclatency -p $victim -d 1 c:malloc"
bpfgraft attach "$victim" >/dev/null   # joins bpfgraft again: tools reach the processes bpfgraft manages
bpfgraft run -- /usr/sbin/funclatency -p "$victim" -d 1 c:malloc
kill -0 "$victim" && echo "process $victim is still running"
