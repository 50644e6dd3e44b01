#!/usr/bin/env bash
# Sets up a fresh Debian 12 machine, builds bpfgraft (with the ASan/UBSan
# test variants) and runs the whole test suite through ctest.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBPFGRAFT_SANITIZED_TESTS=ON >/dev/null
cmake --build build -j"$(nproc)"
# The summary ctest prints last ("100% tests passed, 0 tests failed out of N")
# is the verdict; --output-on-failure shows why anything failed.
ctest --test-dir build --output-on-failure --timeout 600 -j2 "$@"
