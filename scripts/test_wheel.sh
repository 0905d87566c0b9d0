#!/usr/bin/env bash
# CI step: build the manylinux wheel (scripts/wheel.sh), install it into a
# fresh virtual environment, and run the test suite against the installed
# package, from a directory outside the source tree, so nothing can import
# the checkout by accident. Needs root, like the suite.
# Usage: scripts/test_wheel.sh [pytest args...]
#   WHEEL=path.whl  test that wheel instead of building one.
set -euo pipefail
cd "$(dirname "$0")/.."
SRC=$PWD
PY=${PYTHON:-python3}
start=$(date +%s)
work=$(mktemp -d /tmp/fastbpf-wheeltest.XXXXXX)
trap 'rm -rf "$work"' EXIT
# Readable by all, like any install location: tests drop to nobody and import
# fastbpf's lazily loaded modules from the venv (mktemp -d makes it 0700).
chmod 755 "$work"

whl=${WHEEL:-}
if [ -z "$whl" ]; then
    whl=$(bash scripts/wheel.sh "$work/dist" | tail -1)
fi
built=$(date +%s)

"$PY" -m venv "$work/venv"
V="$work/venv/bin/python"
"$V" -m pip install -q --disable-pip-version-check "${whl}[test,cli,netlink]"

# The tests and their data, without the package: they import the installed one.
mkdir -p "$work/run"
cp -r "$SRC/tests" "$SRC/testdata" "$SRC/examples" "$SRC/fuzz" "$SRC/scripts" "$work/run/"
cp "$SRC/pyproject.toml" "$work/run/"   # pytest settings only; no fastbpf/ beside it
cd "$work/run"
where=$("$V" -c 'import fastbpf, os; print(os.path.dirname(fastbpf.__file__))')
case "$where" in
    "$work/venv/"*) echo "test_wheel: testing $(basename "$whl") installed at $where" ;;
    *) echo "test_wheel: fastbpf imported from $where, not the venv" >&2; exit 1 ;;
esac
mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf
status=0
# Left out: what reads the source tree, which this run must not have (the
# import rules over fastbpf/*.py and *.pyx, stubtest's list of .pyx modules,
# the editable install); scripts/test.sh ran them on the same sources.
FASTBPF_WHEEL="$whl" "$V" -m pytest tests -q -p no:cacheprovider \
    --ignore tests/test_imports.py --ignore tests/test_stubs.py \
    --deselect tests/test_packaging.py::test_user_script_typechecks_after_an_editable_install \
    "$@" || status=$?
end=$(date +%s)
echo "test_wheel: build $((built - start)) s, install + tests $((end - built)) s, total $((end - start)) s"
exit $status
