#!/usr/bin/env bash
# Fuzz one parser for a while: scripts/fuzz.sh TARGET SECONDS [--runs N] [...]
# TARGET: btf, btf_ext, asm, elf (the object loader; structure-aware). Needs atheris
# (pip install atheris). Crashes go to fuzz/crashes/TARGET/; the final lines
# give libFuzzer's figures (stat::number_of_executed_units = executions).
set -euo pipefail
[ $# -ge 2 ] || { sed -n '2,5p' "$0" >&2; exit 2; }
cd "$(dirname "$0")/.."
exec "${PYTHON:-python3}" scripts/fuzz.py "$@"
