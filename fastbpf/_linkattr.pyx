# cython: language_level=3
"""Typed packers for the attach-type-specific tail of BPF_LINK_CREATE.

``_core.link_create`` takes the common head (prog_fd, target_fd,
attach_type, flags) and up to 48 bytes of tail whose layout depends on the
attach type. Each function here fills one of the tail structs declared in
``_abi.pxd`` and returns its bytes, so no layout is written twice. The
offsets of those structs are listed with every other layout in
``fastbpf._abi_layout.layout()`` (``"link_create.<kind>"``), which
``tests/test_abi.py`` checks against <linux/bpf.h> and, for fields newer
than that header, the kernel's BTF.

Pointer fields take addresses (``_core.address_of``): the caller keeps the
buffers alive across the ``link_create`` call.
"""

from libc.stdint cimport uint32_t, int32_t, uint64_t
from libc.string cimport memset

from fastbpf._abi cimport (
    fbpf_link_perf_event, fbpf_link_kprobe_multi, fbpf_link_tracing, fbpf_link_netfilter,
    fbpf_link_tcx, fbpf_link_uprobe_multi, fbpf_link_iter, fbpf_iter_map, fbpf_iter_cgroup,
    fbpf_iter_task,
)

cdef inline bytes _raw(void *p, size_t n):
    return (<char *>p)[:n]


def perf_event(uint64_t cookie=0):
    """``link_create.perf_event``: the bpf_cookie."""
    cdef fbpf_link_perf_event s
    memset(&s, 0, sizeof(s))
    s.bpf_cookie = cookie
    return _raw(&s, sizeof(s))


def kprobe_multi(uint32_t flags, uint32_t cnt, uint64_t syms=0, uint64_t addrs=0,
                 uint64_t cookies=0):
    """``link_create.kprobe_multi``: *cnt* functions by name (*syms*, an
    array of char pointers) or address (*addrs*), with optional *cookies*."""
    cdef fbpf_link_kprobe_multi s
    memset(&s, 0, sizeof(s))
    s.flags = flags
    s.cnt = cnt
    s.syms = syms
    s.addrs = addrs
    s.cookies = cookies
    return _raw(&s, sizeof(s))


def tracing(uint32_t target_btf_id=0, uint64_t cookie=0):
    """``link_create.tracing``: *target_btf_id* 0 keeps the load-time target."""
    cdef fbpf_link_tracing s
    memset(&s, 0, sizeof(s))
    s.target_btf_id = target_btf_id
    s.cookie = cookie
    return _raw(&s, sizeof(s))


def netfilter(uint32_t pf, uint32_t hooknum, int32_t priority, uint32_t flags=0):
    """``link_create.netfilter``."""
    cdef fbpf_link_netfilter s
    memset(&s, 0, sizeof(s))
    s.pf = pf
    s.hooknum = hooknum
    s.priority = priority
    s.flags = flags
    return _raw(&s, sizeof(s))


def tcx(uint32_t relative=0, uint64_t expected_revision=0):
    """``link_create.tcx``: *relative* is a relative fd or id (by flags)."""
    cdef fbpf_link_tcx s
    memset(&s, 0, sizeof(s))
    s.relative_fd = relative
    s.expected_revision = expected_revision
    return _raw(&s, sizeof(s))


def uprobe_multi(uint64_t path, uint32_t cnt, uint64_t offsets, uint64_t ref_ctr_offsets=0,
                 uint64_t cookies=0, uint32_t flags=0, uint32_t pid=0):
    """``link_create.uprobe_multi``: *path* and the arrays are addresses."""
    cdef fbpf_link_uprobe_multi s
    memset(&s, 0, sizeof(s))
    s.path = path
    s.offsets = offsets
    s.ref_ctr_offsets = ref_ctr_offsets
    s.cookies = cookies
    s.cnt = cnt
    s.flags = flags
    s.pid = pid
    return _raw(&s, sizeof(s))


def iter_info(uint64_t info=0, uint32_t info_len=0):
    """``link_create.iter_info``/``iter_info_len``: where the
    ``bpf_iter_link_info`` (see :func:`iter_map` and friends) lies."""
    cdef fbpf_link_iter s
    memset(&s, 0, sizeof(s))
    s.iter_info = info
    s.iter_info_len = info_len
    return _raw(&s, sizeof(s))


def iter_map(uint32_t map_fd):
    """``bpf_iter_link_info.map``."""
    cdef fbpf_iter_map s
    memset(&s, 0, sizeof(s))
    s.map_fd = map_fd
    return _raw(&s, sizeof(s))


def iter_cgroup(uint32_t order, uint32_t cgroup_fd=0, uint64_t cgroup_id=0):
    """``bpf_iter_link_info.cgroup``: *order* is a BPF_CGROUP_ITER_* value."""
    cdef fbpf_iter_cgroup s
    memset(&s, 0, sizeof(s))
    s.order = order
    s.cgroup_fd = cgroup_fd
    s.cgroup_id = cgroup_id
    return _raw(&s, sizeof(s))


def iter_task(uint32_t tid=0, uint32_t pid=0, uint32_t pid_fd=0):
    """``bpf_iter_link_info.task``."""
    cdef fbpf_iter_task s
    memset(&s, 0, sizeof(s))
    s.tid = tid
    s.pid = pid
    s.pid_fd = pid_fd
    return _raw(&s, sizeof(s))

