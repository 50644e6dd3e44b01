#!/usr/bin/env bash
# Formats every C source and header git tracks with the house style
# (.clang-format). --check only reports what differs and exits 1 if any.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=(-i)
[ "${1:-}" = "--check" ] && mode=(--dry-run -Werror)
git ls-files -z '*.c' '*.h' | xargs -0 clang-format "${mode[@]}"
