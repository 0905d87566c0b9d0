"""Shared fixtures: every test runs against the real kernel, as root.

Names of pins, namespaces and cgroups are unique per test run so that other
processes using BPF on the same machine are never disturbed.
"""

from __future__ import annotations

import gc
import os
import shutil
import uuid

import pytest

BPFFS = "/sys/fs/bpf"


def pytest_collection_modifyitems(config, items):
    """``kernel`` tests need root and the running kernel; ``noroot`` tests
    (asm, BTF parsing, fuzzing, pure Python) run as anyone. A test marked
    neither is taken to need the kernel. A test marked both is a mistake."""
    for item in items:
        marks = {m.name for m in item.iter_markers()} & {"kernel", "noroot"}
        if marks == {"kernel", "noroot"}:
            raise pytest.UsageError(f"{item.nodeid} is marked both kernel and noroot")
        if not marks:
            item.add_marker(pytest.mark.kernel)
    if os.geteuid() != 0:
        skip = pytest.mark.skip(reason="needs root: bpf(2) is privileged on this host "
                                       "(run the noroot tests with -m noroot)")
        for item in items:
            if item.get_closest_marker("kernel") is not None:
                item.add_marker(skip)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A test that runs into a feature this kernel lacks is skipped, with the
    probe's reason, instead of failing.

    Only a :class:`NotSupportedError` that the library raised *because a
    feature probe said no* (it carries ``.probe``) counts: such errors come
    from ``features.unsupported_*``, which consults the probe after the
    kernel refused. Any other error, EINVAL included, still fails the test.
    """
    outcome = yield
    rep = outcome.get_result()
    if call.excinfo is None or rep.outcome != "failed":
        return
    from fastbpf.errors import NotSupportedError
    err = call.excinfo.value
    probe = getattr(err, "probe", None) if isinstance(err, NotSupportedError) else None
    if probe is None or probe.ok:
        return
    rep.outcome = "skipped"
    rep.longrepr = (str(item.path), item.location[1] or 0, f"Skipped: {probe.reason}")


@pytest.fixture
def unique_name(request):
    """A short name unique to this test run (fits the kernel's 15 chars)."""
    return "fb" + uuid.uuid4().hex[:10]


@pytest.fixture
def bpffs_dir():
    """A private directory on bpffs, removed with everything in it afterwards."""
    if not os.path.ismount(BPFFS):
        pytest.skip(f"no bpffs mounted at {BPFFS}")
    path = os.path.join(BPFFS, "fastbpf-test-" + uuid.uuid4().hex[:12])
    os.mkdir(path)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _open_fds() -> set[int]:
    return {int(x) for x in os.listdir("/proc/self/fd")}


@pytest.fixture
def no_fd_leak():
    """Fail the test if it leaves file descriptors open."""
    gc.collect()
    before = _open_fds()
    yield
    gc.collect()
    leaked = _open_fds() - before
    # listdir itself briefly holds an fd; recheck once to rule that out.
    leaked = {fd for fd in leaked if os.path.exists(f"/proc/self/fd/{fd}")}
    assert not leaked, f"file descriptors leaked: {sorted(leaked)} -> " + ", ".join(
        os.readlink(f"/proc/self/fd/{fd}") for fd in sorted(leaked) if os.path.exists(f"/proc/self/fd/{fd}"))


@pytest.fixture(scope="session", autouse=True)
def _kernel_btf_loaded_once():
    """The cached vmlinux BTF keeps its file mapped for the whole session;
    load it before any test so fd-leak checks do not count it."""
    from fastbpf import btf
    try:
        btf.load_kernel_spec()
    except (OSError, btf.BTFError):
        pass  # tests that need kernel BTF skip on their own
    yield
