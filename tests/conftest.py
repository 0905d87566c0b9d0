"""Shared fixtures: every test runs against the real kernel, as root.

Names of pins, namespaces and cgroups are unique per test run so that other
processes using BPF on the same machine are never disturbed.
"""

from __future__ import annotations

import gc
import os
import shutil
import threading
import time
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
    # Its millions of objects live as long as the session: keep them out of
    # every collection (the leak check collects twice per test).
    gc.collect()
    gc.freeze()
    yield


# -- no fd, pin or thread left behind --------------------------------------------------

_pins_made: list[str] = []


@pytest.fixture(scope="session", autouse=True)
def _record_pins():
    """Note every path this process pins (fastbpf pins only through
    ``_core.obj_pin``; the call goes through to the kernel unchanged), so the
    leak check looks at our pins only: other processes pin on the same
    bpffs at the same time."""
    try:
        from fastbpf import _core
    except ImportError:
        yield
        return
    real = _core.obj_pin

    def obj_pin(fd, path):
        real(fd, path)
        _pins_made.append(os.fsdecode(path))

    _core.obj_pin = obj_pin
    try:
        yield
    finally:
        _core.obj_pin = real


def _fd_targets() -> dict[int, str]:
    out = {}
    for name in os.listdir("/proc/self/fd"):
        try:
            out[int(name)] = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            pass  # the listdir's own fd, closed already
    return out


@pytest.fixture(autouse=True)
def _no_leaks(request):
    """Fail a test that leaves an fd open, a pin on bpffs or a thread running
    (after a garbage collection: the collector is a last resort, not a leak)."""
    if request.node.get_closest_marker("leaks_ok") is not None:
        yield
        return
    gc.collect()
    fds = _fd_targets()
    threads = set(threading.enumerate())
    first_pin = len(_pins_made)
    yield
    gc.collect()
    problems = []
    deadline = time.monotonic() + 2.0
    while True:
        extra = [t for t in threading.enumerate() if t not in threads and t.is_alive()]
        if not extra or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    if extra:
        problems.append("threads left running: " + ", ".join(t.name for t in extra))
    leaked = {fd: target for fd, target in _fd_targets().items()
              if fd not in fds or fds[fd] != target}
    if leaked:
        problems.append("file descriptors left open: " + ", ".join(
            f"{fd} -> {target}" for fd, target in sorted(leaked.items())))
    pins = [p for p in _pins_made[first_pin:] if os.path.lexists(p)]
    if pins:
        problems.append("pins left on bpffs: " + ", ".join(pins))
    if problems:
        pytest.fail("; ".join(problems), pytrace=False)
