#!/usr/bin/env bash
# Run the whole test suite against the running kernel (needs root).
# Does its own set-up first; extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec "${PYTHON:-python3}" -m pytest tests -q -p no:cacheprovider "$@"
