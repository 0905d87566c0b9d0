#!/usr/bin/env bash
# Benchmarks: fastbpf against C programs issuing the same syscalls, same run.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec "${PYTHON:-python3}" bench/compare.py "$@"
