"""``fastbpf export CONFIG.yaml [--port 9435]``: BPF maps as a Prometheus endpoint.

Three separate steps, so that each can be used (and tested) alone:

1. :func:`fastbpf.metrics.config.load_config` parses and checks the YAML.
2. :class:`Exporter` resolves each metric's map (a pin named under ``maps:``,
   or a map of the loaded object), builds one :class:`MapCollector` per
   metric (a bad field, decoder or bucket setting fails here, naming the
   config line) and a collector of the exporter's own metrics.
3. :meth:`Exporter.serve` serves ``/metrics`` over HTTP.

:func:`main` adds step 0: load the object the config names with
``fastbpf.load_collection(path)`` and attach its programs as the config
says (``coll.programs[name].attach(**attach)``).

A scrape never kills the exporter: a map that disappears or a decode that
fails logs a line, counts in ``fastbpf_exporter_map_read_errors_total``
and leaves that metric out of this scrape.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from typing import Any, Sequence

from ..errors import BPFError
from ..maps import Map
from .collector import MapCollector
from .config import Config, MetricConfig, load_config
from .decoders import ConfigError

__all__ = ["Exporter", "PinnedMap", "main", "DEFAULT_PORT"]

log = logging.getLogger("fastbpf.metrics")

DEFAULT_PORT = 9435


class MapGoneError(LookupError):
    """The map a metric reads is no longer there."""


class PinnedMap:
    """A map source that follows a bpffs pin.

    Called at each scrape, it returns the map pinned at *path*: the same
    Map while the pin is unchanged, a new one when the pin was replaced,
    and :class:`MapGoneError` when the pin was removed (the exporter then
    reports an error for that metric, and recovers when the pin returns).
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._map: Map | None = None
        self._ino: int | None = None
        self._lock = threading.Lock()
        self()

    def __call__(self) -> Map:
        with self._lock:
            try:
                ino = os.stat(self.path).st_ino
            except FileNotFoundError:
                raise MapGoneError(f"the pin {self.path} is gone") from None
            if self._map is None or ino != self._ino:
                m = Map.from_pin(self.path)
                if self._map is not None:
                    self._map.close()
                self._map, self._ino = m, ino
            return self._map

    def close(self) -> None:
        """Release the map."""
        with self._lock:
            if self._map is not None:
                self._map.close()
                self._map = None


class _SelfCollector:
    """The exporter's own metrics, read from its collectors after they ran."""

    def __init__(self, collectors: list[MapCollector]) -> None:
        self.collectors = collectors

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> list[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
        dur = GaugeMetricFamily("fastbpf_exporter_scrape_duration_seconds",
                                "Time the last scrape of each metric took (read, decode, "
                                "group)", labels=["metric"])
        err = CounterMetricFamily("fastbpf_exporter_map_read_errors",
                                  "Scrapes of a metric that failed: map gone, read or decode "
                                  "error", labels=["metric"])
        total = 0.0
        for c in self.collectors:
            dur.add_metric([c.name], c.last_duration)
            err.add_metric([c.name], c.errors)
            total += c.last_duration
        tot = GaugeMetricFamily("fastbpf_exporter_last_scrape_seconds",
                                "Time the last scrape of all metrics took", value=total)
        return [dur, err, tot]


class Exporter:
    """Collectors for every metric of *config*, and their HTTP endpoint.

    *collection* is a loaded object (``.maps`` by name) for metrics whose
    map is not pinned; without one, every map must be under ``maps:``.
    """

    def __init__(self, config: Config, collection: Any = None) -> None:
        from prometheus_client import CollectorRegistry
        self.config = config
        self._sources: list[PinnedMap] = []
        self._pins: dict[str, PinnedMap] = {}
        self.collectors: list[MapCollector] = []
        self._server: Any = None
        self._thread: threading.Thread | None = None
        try:
            for mc in config.metrics:
                self.collectors.append(self._collector(mc, collection))
        except BaseException:
            self.close()
            raise
        self.registry = CollectorRegistry(auto_describe=True)
        for c in self.collectors:
            self.registry.register(c)
        self.registry.register(_SelfCollector(self.collectors))

    def _collector(self, mc: MetricConfig, collection: Any) -> MapCollector:
        source: Any
        pinned = self.config.maps.get(mc.map)
        if pinned is not None:
            source = self._pins.get(mc.map)
            if source is None:  # one open map per pin, however many metrics read it
                try:
                    source = PinnedMap(pinned["pin"])
                except (OSError, BPFError, ValueError) as e:
                    raise ConfigError(f"map {mc.map!r}: cannot open the pin {pinned['pin']}: "
                                      f"{e}", getattr(pinned, "line", None) or mc.line) from None
                self._sources.append(source)
                self._pins[mc.map] = source
        else:
            maps = getattr(collection, "maps", None) if collection is not None else None
            if maps is None or mc.map not in maps:
                where = "the object's maps" if collection is not None else "'maps:' (no object)"
                known = sorted(maps) if maps is not None else sorted(self.config.maps)
                raise ConfigError(f"{mc.kind} {mc.name!r}: unknown map {mc.map!r}, not in "
                                  f"{where} (known: {', '.join(known) or 'none'})", mc.line)
            source = maps[mc.map]
        return MapCollector(source, mc.name, mc.help, mc.kind, mc.labels, line=mc.line,
                            **mc.options)

    def scrape(self) -> bytes:
        """One scrape in the text exposition format, without HTTP."""
        from prometheus_client import generate_latest
        return generate_latest(self.registry)

    def serve(self, port: int = DEFAULT_PORT, addr: str = "0.0.0.0") -> tuple[str, int]:
        """Serve ``/metrics`` from a background thread; returns the bound (addr, port)."""
        from prometheus_client import start_http_server
        self._server, self._thread = start_http_server(port, addr=addr, registry=self.registry)
        return self._server.server_address[:2]  # type: ignore[no-any-return]

    def close(self) -> None:
        """Stop the server and release the pinned maps."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            if self._thread is not None:
                self._thread.join(5)
            self._server = self._thread = None
        for s in self._sources:
            s.close()
        self._sources.clear()
        self._pins.clear()

    def __enter__(self) -> "Exporter":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def load_object(config: Config) -> tuple[Any, list[Any]]:
    """Load the config's object with the ELF loader and attach its programs.

    Returns ``(collection, links)``; the caller closes both.
    """
    import fastbpf
    loader = getattr(fastbpf, "load_collection", None)
    if loader is None:
        raise ConfigError(f"the config names an object ({config.object}) but this fastbpf has "
                          f"no ELF loader (fastbpf.load_collection); use pinned maps under "
                          f"'maps:'", 1)
    coll = loader(config.object)
    links = []
    try:
        for p in config.programs:
            progs = coll.programs
            if p["name"] not in progs:
                raise ConfigError(f"unknown program {p['name']!r} (the object has: "
                                  f"{', '.join(sorted(progs))})", getattr(p, "line", None))
            links.append(progs[p["name"]].attach(**dict(p.get("attach") or {})))
    except BaseException:
        for lk in links:
            lk.close()
        coll.close()
        raise
    return coll, links


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``fastbpf export``; returns the exit status."""
    p = argparse.ArgumentParser(prog="fastbpf export",
                                description="export BPF maps as Prometheus metrics")
    p.add_argument("config", help="YAML config (ebpf_exporter's format)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT)
    p.add_argument("--addr", default="0.0.0.0", help="address to listen on")
    p.add_argument("--log-level", default="INFO")
    args = p.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s fastbpf export: %(levelname)s %(message)s")
    links: list[Any]
    coll, links = None, []
    try:
        config = load_config(args.config)
        if config.object:
            coll, links = load_object(config)
        exporter = Exporter(config, coll)
    except ConfigError as e:
        where = f"{args.config}:{e.line}" if e.line else args.config
        print(f"fastbpf export: {where}: {str(e).split(': ', 1)[-1] if e.line else e}",
              file=sys.stderr)
        _release(coll, links)
        return 2
    except (OSError, BPFError) as e:
        print(f"fastbpf export: {e}", file=sys.stderr)
        _release(coll, links)
        return 1
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        addr, port = exporter.serve(args.port, args.addr)
        log.info("serving %d metrics on http://%s:%d/metrics", len(exporter.collectors), addr, port)
        print(f"listening on {addr}:{port}", flush=True)
        stop.wait()
    finally:
        exporter.close()
        _release(coll, links)
    return 0


def _release(coll: Any, links: list[Any]) -> None:
    for lk in links:
        try:
            lk.close()
        except Exception:  # pragma: no cover - best effort at exit
            pass
    if coll is not None:
        coll.close()
