#!/usr/bin/env bash
# Set up a fresh Debian machine (as root) to build, run and test fastbpf:
# system packages, the Python package with its extension modules, and the
# bpf/trace filesystems. Safe to run again: it skips what is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v gcc >/dev/null || need_apt+=(gcc)
command -v bpftool >/dev/null || need_apt+=(bpftool)
command -v ip >/dev/null || need_apt+=(iproute2)
command -v nsenter >/dev/null || need_apt+=(util-linux)
[ -e /usr/include/bpf/libbpf.h ] || need_apt+=(libbpf-dev)   # benchmarks' C baseline only
[ -e /usr/include/linux/bpf.h ] || need_apt+=(linux-libc-dev)
command -v llvm-mc-19 >/dev/null || need_apt+=(llvm-19)       # cross-checks of fastbpf.asm
command -v tmux >/dev/null || need_apt+=(tmux)                 # `fastbpf top` is tested in a terminal
command -v clang-19 >/dev/null || need_apt+=(clang-19)         # compiles `fastbpf btf dump --format c` output
command -v objdump >/dev/null || need_apt+=(binutils)          # `fastbpf prog dump jited`
# Objects nobody on the project wrote (tests/test_elf_objects.py): libbpf
# skeletons in libbpf-tools (1.3 MB download, 18 MB installed), plain
# objects in xdp-tools/libxdp1 (0.4 MB).
[ -e /usr/sbin/biolatency ] || need_apt+=(libbpf-tools)
compgen -G '/usr/lib/*/bpf/*.o' >/dev/null || need_apt+=(xdp-tools)
if [ ${#need_apt[@]} -gt 0 ]; then
    echo "setup: apt-get install ${need_apt[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
# pcp's BPF PMDA modules (libbpf skeletons, same tests): taken out of the
# .deb (2.8 MB download; 1.1 MB kept), not installed: pcp's postinst starts daemons.
pcp_dir=/var/cache/fastbpf-test/pcp
pcp_mods=usr/lib/pcp/pmdas/bpf/modules
pcp_unpack() {
    (cd "$pcp_dir" && apt-get download -qq pcp 2>/dev/null &&
        dpkg-deb --fsys-tarfile pcp_*.deb | tar -x "./$pcp_mods"; rc=$?; rm -f pcp_*.deb; exit $rc)
}
if ! compgen -G "/$pcp_mods/*.so" >/dev/null && ! compgen -G "$pcp_dir/$pcp_mods/*.so" >/dev/null; then
    echo "setup: apt-get download pcp (its BPF modules unpacked in $pcp_dir)"
    mkdir -p "$pcp_dir"
    pcp_unpack || { apt-get update -qq && pcp_unpack; } \
        || echo "setup: pcp not available; its objects' tests will skip" >&2
fi

PY=${PYTHON:-python3}
echo "setup: pip install -e .[test,bench,netlink] (editable_mode=compat)"
# compat mode: a .pth file puts the tree on sys.path, which mypy follows
# (the default editable finder hook is invisible to type checkers).
"$PY" -m pip install -q --disable-pip-version-check --no-warn-script-location \
    --config-settings editable_mode=compat -e '.[test,bench,netlink]'
# The editable install compiles the extension modules into the source tree;
# check that they import from here.
"$PY" -c "import fastbpf._core" || { echo "setup: fastbpf._core did not build" >&2; exit 1; }

mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf
mountpoint -q /sys/kernel/tracing || mount -t tracefs tracefs /sys/kernel/tracing || true
echo "setup: done"
