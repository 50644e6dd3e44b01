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
  libunwind-dev
  libmsgpack-dev python3 python3-msgpack
  libcriterion-dev
  libzydis-dev
  bpftool linux-libc-dev
  strace procps
  clang-format   # the house style (.clang-format); ctest format_check
  golang-go      # a cgo victim: probes on goroutine stacks
  man-db         # the install test renders the man pages (man -l); cpack's Depends need dpkg-dev (build-essential)
  libbpf-tools   # `bpfgraft run` is tested with its opensnoop, syscount, funclatency, bashreadline
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
echo "setup: all packages present"
