#!/usr/bin/env bash
# The main job: set up, then run the examples. quickstart.py creates maps,
# loads and runs a hand-written program, and prints what the kernel wrote as
# numpy arrays; count_syscalls.py loads a compiled object (committed, so no
# clang is needed), sets a constant, attaches it to a tracepoint, and prints
# live counts through a global variable and a map.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
"${PYTHON:-python3}" examples/quickstart.py "$@"
echo
exec "${PYTHON:-python3}" examples/count_syscalls.py 2
