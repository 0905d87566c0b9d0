#!/usr/bin/env bash
# The main job: set up, then run the quickstart example, which creates maps,
# loads and runs a program, and prints what the kernel wrote as numpy arrays.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec "${PYTHON:-python3}" examples/quickstart.py "$@"
