#!/usr/bin/env bash
# Installs every Debian 12 package bpfgraft needs to build, test and run.
# Idempotent and non-interactive: safe to run on every CI run.
set -euo pipefail

# One pinned LLVM for the ORC JIT (issue 6); clang builds the BPF samples.
LLVM_VERSION=14

PACKAGES=(
  build-essential cmake pkg-config git
  clang "llvm-${LLVM_VERSION}-dev" "clang-${LLVM_VERSION}" "libclang-rt-${LLVM_VERSION}-dev"
  libbpf-dev libelf-dev zlib1g-dev libzstd-dev
  liblzma-dev    # bpfgraftd: MiniDebugInfo (.gnu_debugdata) symbols for stack frames
  libunwind-dev
  libmsgpack-dev python3 python3-msgpack
  libcriterion-dev
  libzydis-dev
  bpftool linux-libc-dev
  strace procps
  musl-tools     # musl-gcc: musl-linked dynamic and static victims (issue 16: maps, hooks, start outside glibc)
  clang-format   # the house style (.clang-format); ctest format_check
  golang-go      # Go victims: probes on goroutine stacks (cgo), attach_go (pure Go, stripped)
  rustc          # attach_go: a Rust victim (rustc -O, std threads)
  man-db         # the install test renders the man pages (man -l); cpack's Depends need dpkg-dev (build-essential)
  libbpf-tools   # `bpfgraft run` is tested with its opensnoop, syscount, funclatency, bashreadline
  bpftrace       # attach_tools: bpftrace's uprobe:BIN:FUNC+OFF under `bpfgraft run` gives the kernel's count (issue 22)
  python3-matplotlib  # scripts/benchplot.py: the README's chart of a bpfgraft-bench --json report (issue 20)
  gdb            # attach_unwind: gdb's bt through a uretprobe's trampoline
  openssh-server # cli_remote: bpfgraft --host ssh:// against an sshd the test starts on 127.0.0.1
  libssl-dev openssl  # bpfgraftd --listen / --host tcps://: mutual TLS 1.3 (OpenSSL); cli_tls makes its CA with the openssl CLI
  libyaml-dev    # bpfgraft-exporter: its config is ebpf_exporter's YAML (libyaml's parser keeps each node's line for errors)
  prometheus     # exporter_prometheus: a real Prometheus (and promtool) scrapes bpfgraft-exporter on 127.0.0.1
  systemtap-sdt-dev  # <sys/sdt.h>: the USDT victim of attach_usdt (probes with semaphores)
  # attach_unwind: a C++ victim on libc++ and LLVM's libunwind (headers below)
  "libc++1-${LLVM_VERSION}" "libc++abi1-${LLVM_VERSION}" "libc++abi-${LLVM_VERSION}-dev" "libunwind-${LLVM_VERSION}"
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done

if ((${#missing[@]})); then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# libc++'s headers: libc++-14-dev depends on libunwind-14-dev, which conflicts
# with libunwind-dev (the injector's libunwind-ptrace), so its headers are
# unpacked, not installed, to where test/unwind/CMakeLists.txt looks; the
# runtime libraries come from the packages above.
LIBCXX_ROOT=/opt/bpfgraft/libcxx-${LLVM_VERSION}
if [ ! -e "/usr/lib/llvm-${LLVM_VERSION}/include/c++/v1/__config" ] &&
  [ ! -e "$LIBCXX_ROOT/usr/lib/llvm-${LLVM_VERSION}/include/c++/v1/__config" ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "setup: unpacking libc++-${LLVM_VERSION}-dev's headers into $LIBCXX_ROOT"
  tmp=$(mktemp -d)
  (cd "$tmp" && apt-get download -qq "libc++-${LLVM_VERSION}-dev")
  $SUDO mkdir -p "$LIBCXX_ROOT"
  $SUDO dpkg-deb -x "$tmp"/libc++-"${LLVM_VERSION}"-dev_*.deb "$LIBCXX_ROOT"
  rm -rf "$tmp"
fi
echo "setup: all packages present"
