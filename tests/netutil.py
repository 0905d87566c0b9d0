"""Network test helpers: private namespaces, veth pairs, UDP traffic.

Everything here creates uniquely named objects and removes them again, so
tests can run beside other users of network namespaces on the same machine.

Code runs inside a namespace in one of two ways:

* :meth:`NetNS.run` calls a Python function in a short-lived thread that
  entered the namespace with setns(2). Sockets, netlink sockets and interface
  name lookups made by that function belong to the namespace; the objects it
  returns (sockets, links) stay usable from any thread afterwards.
* :meth:`NetNS.sh` runs a command under ``nsenter --net`` (not ``ip netns
  exec``, which remounts /sys and hides bpffs and the cgroup tree).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import socket
import subprocess
import threading
import time
import uuid
from typing import Any, Callable

CLONE_NEWNET = 0x40000000
NETNS_DIR = "/var/run/netns"

_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


def setns(fd: int, nstype: int = CLONE_NEWNET) -> None:
    """setns(2) for the calling thread (Python 3.11 has no os.setns)."""
    if _libc.setns(fd, nstype) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


def run(cmd: str | list[str], check: bool = True) -> subprocess.CompletedProcess:
    """Run a command; on failure raise with its stderr."""
    args = cmd if isinstance(cmd, list) else ["sh", "-c", cmd]
    p = subprocess.run(args, capture_output=True, text=True)
    if check and p.returncode != 0:
        raise RuntimeError(f"{cmd!r} failed ({p.returncode}): {p.stderr.strip()}")
    return p


class NetNS:
    """A named network namespace (``ip netns add``), deleted by :meth:`close`."""

    def __init__(self, name: str | None = None, lo_up: bool = True) -> None:
        self.name = name or "fbns" + uuid.uuid4().hex[:10]
        run(["ip", "netns", "add", self.name])
        self.path = os.path.join(NETNS_DIR, self.name)
        try:
            # IPv6 off before any interface exists here: then no interface
            # ever sends router solicitations, DAD or MLD reports, and the
            # only packets on the wire are the test's own.
            self.sh("sysctl -qw net.ipv6.conf.all.disable_ipv6=1 "
                    "net.ipv6.conf.default.disable_ipv6=1")
            if lo_up:
                self.sh("ip link set lo up")
        except BaseException:
            self.close()
            raise

    def sh(self, cmd: str, check: bool = True) -> subprocess.CompletedProcess:
        """Run the shell command *cmd* inside the namespace."""
        return run(["nsenter", f"--net={self.path}", "sh", "-c", cmd], check)

    def run(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Call ``fn(*args, **kwargs)`` in a thread inside the namespace."""
        result: dict[str, Any] = {}

        def body() -> None:
            try:
                fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
                try:
                    setns(fd)
                finally:
                    os.close(fd)
                result["value"] = fn(*args, **kwargs)
            except BaseException as e:  # re-raised in the caller
                result["error"] = e

        t = threading.Thread(target=body, name=f"netns-{self.name}")
        t.start()
        t.join()
        if "error" in result:
            raise result["error"]
        return result["value"]

    def socket(self, *args: Any) -> socket.socket:
        """A socket that belongs to this namespace."""
        return self.run(socket.socket, *args)

    def ifindex(self, ifname: str) -> int:
        return self.run(socket.if_nametoindex, ifname)

    def close(self) -> None:
        run(["ip", "netns", "del", self.name], check=False)

    def __enter__(self) -> "NetNS":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class VethPair:
    """Two namespaces joined by a veth pair: ``a`` (10.199.0.1 on ``va``)
    and ``b`` (10.199.0.2 on ``vb``).

    IPv6 is off and each side has a permanent neighbour entry for the other,
    so no ARP or IPv6 housekeeping packets cross the link: a counter on
    either end sees exactly the packets the test sends.
    """

    IP_A, IP_B = "10.199.0.1", "10.199.0.2"
    MAC_A, MAC_B = "02:fb:00:00:00:01", "02:fb:00:00:00:02"
    IF_A, IF_B = "va", "vb"

    def __init__(self) -> None:
        self.a = NetNS()
        self.b = None
        try:
            self.b = NetNS()
            # Created straight into the namespaces, so the names never exist
            # in the root namespace and cannot collide with anyone's.
            run(["ip", "link", "add", self.IF_A, "address", self.MAC_A, "netns", self.a.name,
                 "type", "veth", "peer", "name", self.IF_B, "address", self.MAC_B,
                 "netns", self.b.name])
            for ns, ifn, ip, peer_ip, peer_mac in (
                    (self.a, self.IF_A, self.IP_A, self.IP_B, self.MAC_B),
                    (self.b, self.IF_B, self.IP_B, self.IP_A, self.MAC_A)):
                ns.sh(f"sysctl -qw net.ipv6.conf.{ifn}.disable_ipv6=1 && "
                      f"ip addr add {ip}/24 dev {ifn} && "
                      f"ip neigh replace {peer_ip} lladdr {peer_mac} dev {ifn} nud permanent && "
                      f"ip link set {ifn} up")
            self.ifindex_a = self.a.ifindex(self.IF_A)
            self.ifindex_b = self.b.ifindex(self.IF_B)
            # veth carriers come up asynchronously; wait so the first
            # datagram is not lost in the qdisc of a down device.
            wait_for(lambda: self._up(self.a, self.IF_A) and self._up(self.b, self.IF_B))
        except BaseException:
            self.close()
            raise

    @staticmethod
    def _up(ns: NetNS, ifname: str) -> bool:
        return "LOWER_UP" in ns.sh(f"ip link show {ifname}").stdout

    def close(self) -> None:
        # Deleting a namespace deletes the veth end inside it, and with it the peer.
        for ns in (self.a, self.b):
            if ns is not None:
                ns.close()

    def __enter__(self) -> "VethPair":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def wait_for(cond: Callable[[], bool], timeout: float = 5.0, what: str = "condition") -> None:
    """Poll *cond* until it holds; raise TimeoutError otherwise."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.01)


def udp_receiver(ns: NetNS | None, addr: str = "127.0.0.1", port: int = 0) -> socket.socket:
    """A bound UDP socket (in *ns*, or here when None) with a short timeout."""
    def make() -> socket.socket:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((addr, port))
        s.settimeout(0.2)
        return s
    return ns.run(make) if ns is not None else make()


def send_udp(ns: NetNS | None, dst: tuple[str, int], count: int,
             payload: bytes = b"x" * 32) -> None:
    """Send *count* datagrams to *dst* from a socket created in *ns*."""
    def send() -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for _ in range(count):
                s.sendto(payload, dst)
    ns.run(send) if ns is not None else send()


def drain(sock: socket.socket, timeout: float = 0.2) -> list[bytes]:
    """Every datagram that arrives at *sock* until it stays quiet for *timeout*."""
    got = []
    sock.settimeout(timeout)
    while True:
        try:
            got.append(sock.recv(65536))
        except (socket.timeout, BlockingIOError):
            return got
