#!/usr/bin/env bash
# Build fastbpf's extension modules with AddressSanitizer + UndefinedBehaviorSanitizer
# (clang) in a scratch copy of the tree, and run the test suite against them.
#
#   scripts/asan.sh [pytest arguments]        e.g. scripts/asan.sh -m "not slow"
#                                             or scripts/asan.sh tests/test_maps.py
# (pytest's testpaths, tests/, when no path is given).
#
# The sanitizer runtime is LD_PRELOADed into the (uninstrumented) interpreter;
# leak checking is off because CPython keeps memory until exit by design.
# Findings are printed by the runtime as "ERROR: AddressSanitizer" or
# "runtime error:" lines; the log is kept in $ASAN_LOG (default
# ${TMPDIR:-/tmp}/fastbpf-asan.log) and the script fails if it has any.
# CC defaults to gcc (setup.py passes gcc-only flags); with CC=clang-19 the
# compiler-rt runtime is used (Debian: apt-get install libclang-rt-19-dev).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
CC=${CC:-gcc}
PY=${PYTHON:-python3}
if "$CC" --version | grep -q clang; then
  runtime=$("$CC" -print-file-name=libclang_rt.asan-x86_64.so); shared=-shared-libasan
else
  runtime=$("$CC" -print-file-name=libasan.so); shared=
fi
[ -f "$runtime" ] || { echo "no ASan runtime for $CC" >&2; exit 2; }
work=$(mktemp -d "${TMPDIR:-/tmp}/fastbpf-asan.XXXXXX")
trap 'rm -rf "$work"' EXIT
chmod 755 "$work"  # tests that drop to `nobody` import from it
log=${ASAN_LOG:-${TMPDIR:-/tmp}/fastbpf-asan.log}
: > "$log"

# A copy of the tracked tree (plus what tests read), so the in-place build
# never replaces the modules of the checkout itself.
(cd "$root" && git ls-files -z --cached --others --exclude-standard | grep -zv '\.so$' |
   xargs -0 cp --parents -t "$work")
san="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer -g -O1"
(cd "$work" && CC="$CC" LDSHARED="$CC -shared $shared" \
   CFLAGS="$san" LDFLAGS="-fsanitize=address,undefined $shared" \
   "$PY" setup.py -q build_ext --inplace -j 2 >/dev/null 2>"$work/build.err") || {
  cat "$work/build.err" >&2; exit 1; }

# The tools the tests run (bpftool, ip, make) are not instrumented: they get
# the runtime through LD_PRELOAD too, and under ASan's realloc (which always
# moves) bpftool's JSON writer turns quadratic (an 11 MB dump ran > 6 min).
# Wrappers first on PATH start them without it.
mkdir -p "$work/.asan-bin"
for tool in bpftool ip make clang; do
  real=$(command -v "$tool" || true)
  [ -n "$real" ] || continue
  printf '#!/bin/sh\nexec env -u LD_PRELOAD -u ASAN_OPTIONS -u UBSAN_OPTIONS %s "$@"\n' \
    "$real" > "$work/.asan-bin/$tool"
  chmod +x "$work/.asan-bin/$tool"
done

status=0
# The wheel test builds an (uninstrumented) wheel from git; the scratch copy has no .git.
(cd "$work" && PATH="$work/.asan-bin:$PATH" LD_PRELOAD="$runtime" PYTHONMALLOC=malloc \
   ASAN_OPTIONS="detect_leaks=0:abort_on_error=0:halt_on_error=1:log_path=$log.run:allocator_may_return_null=1" \
   UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:log_path=$log.run" \
   "$PY" -m pytest -q -p no:cacheprovider "$@" \
     --deselect tests/test_packaging.py::test_user_script_typechecks_after_a_wheel_install \
   ) || status=$?
cat "$log".run.* >> "$log" 2>/dev/null || true
rm -f "$log".run.*
if grep -qE "ERROR: AddressSanitizer|runtime error:" "$log"; then
  echo "sanitizer findings (full log: $log):" >&2
  grep -E "ERROR: AddressSanitizer|runtime error:|^    #[0-9]+ " "$log" | head -60 >&2
  exit 1
fi
echo "sanitizers: no findings (pytest exit status $status)"
exit "$status"
