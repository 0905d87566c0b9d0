"""The exporter's YAML config: parsed with line numbers, checked before any map is read.

The format follows Cloudflare's ebpf_exporter where the concepts match::

    object: counter.bpf.o              # the BPF object (relative to this file)
    programs:                          # optional: what to attach, and how
      - name: count_packets
        attach: {xdp: eth0}            # keyword arguments of Program.attach()
    maps:                              # optional: maps already pinned on bpffs
      packets: {pin: /sys/fs/bpf/packets}
    metrics:
      counters:
        - name: packets_total
          help: Packets by protocol
          map: packets                 # default: the metric's name
          labels:
            - name: proto
              field: proto
              decoders: [{name: uint}, {name: static_map, static_map: {6: tcp, 17: udp}}]
      histograms:
        - name: latency_seconds
          help: Latency
          bucket_type: exp2
          bucket_min: 0
          bucket_max: 26
          bucket_multiplier: 0.000001
          labels:
            - {name: bucket, size: 4, decoders: [{name: uint}]}
      gauges: []

Every error names the config line it comes from.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from .decoders import ConfigError, LabelSpec

__all__ = ["Config", "MetricConfig", "load_config", "parse_config"]

_METRIC_KEYS = {"name", "help", "map", "labels", "value_field", "bucket_type",
                "bucket_multiplier", "bucket_min", "bucket_max", "bucket_keys"}
_TOP_KEYS = {"object", "programs", "maps", "metrics"}
_KINDS = {"counters": "counter", "gauges": "gauge", "histograms": "histogram"}


class _LineDict(dict[Any, Any]):
    line: int | None = None


class _LineList(list[Any]):
    line: int | None = None


def _loader() -> Any:
    import yaml

    # Any without the PyYAML stubs (types-PyYAML), a class with them.
    class Loader(yaml.SafeLoader):  # type: ignore[misc,unused-ignore]
        """SafeLoader whose mappings and lists remember their first line."""

    def mapping(loader: Any, node: Any) -> _LineDict:
        d = _LineDict(loader.construct_mapping(node, deep=True))
        d.line = node.start_mark.line + 1
        return d

    def sequence(loader: Any, node: Any) -> _LineList:
        seq = _LineList(loader.construct_sequence(node, deep=True))
        seq.line = node.start_mark.line + 1
        return seq

    Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, mapping)
    Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, sequence)
    return Loader


@dataclass
class MetricConfig:
    """One metric of the config, checked for form (maps are checked later)."""

    kind: str
    name: str
    help: str
    map: str
    labels: list[LabelSpec]
    line: int | None
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class Config:
    """A parsed config: the object, attachments, pinned maps and metrics."""

    path: str | None
    object: str | None
    programs: list[dict[Any, Any]]
    maps: dict[str, dict[Any, Any]]
    metrics: list[MetricConfig]


def _line(x: Any, default: int | None = None) -> int | None:
    return getattr(x, "line", None) or default


def _need(d: dict[Any, Any], key: str, typ: type, what: str) -> Any:
    if key not in d:
        raise ConfigError(f"{what} needs '{key}'", _line(d))
    v = d[key]
    if not isinstance(v, typ):
        raise ConfigError(f"{what}: '{key}' must be a {typ.__name__}, not {v!r}", _line(d))
    return v


def parse_config(text: str, path: str | None = None) -> Config:
    """Parse and check config *text* (ConfigError, with the line, on any fault)."""
    import yaml
    try:
        doc = yaml.load(text, Loader=_loader())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        raise ConfigError(f"not valid YAML: {getattr(e, 'problem', e)}",
                          mark.line + 1 if mark else None) from None
    if not isinstance(doc, dict):
        raise ConfigError("the config must be a mapping with a 'metrics' key", 1)
    unknown = set(doc) - _TOP_KEYS
    if unknown:
        raise ConfigError(f"unknown top-level keys: {', '.join(sorted(map(str, unknown)))} "
                          f"(known: {', '.join(sorted(_TOP_KEYS))})", _line(doc))
    obj = doc.get("object")
    if obj is not None and not isinstance(obj, str):
        raise ConfigError("'object' must be a path", _line(doc))
    if obj and path and not os.path.isabs(obj):
        obj = os.path.join(os.path.dirname(os.path.abspath(path)), obj)
    programs = doc.get("programs") or []
    if not isinstance(programs, list):
        raise ConfigError("'programs' must be a list", _line(doc))
    for p in programs:
        if not isinstance(p, dict):
            raise ConfigError("a program entry is a mapping with a name", _line(programs))
        _need(p, "name", str, "a program entry")
        att = p.get("attach")
        if att is not None and not isinstance(att, dict):
            raise ConfigError(f"program {p['name']!r}: 'attach' must be a mapping of "
                              f"arguments", _line(p))
    maps = doc.get("maps") or {}
    if not isinstance(maps, dict):
        raise ConfigError("'maps' must be a mapping of map name -> {pin: PATH}", _line(doc))
    for name, m in maps.items():
        if not isinstance(m, dict):
            raise ConfigError(f"map {name!r}: expected {{pin: PATH}}", _line(maps))
        _need(m, "pin", str, f"map {name!r}")
    metrics_doc = doc.get("metrics")
    if not isinstance(metrics_doc, dict):
        raise ConfigError("'metrics' must be a mapping with counters/histograms/gauges",
                          _line(doc))
    bad = set(metrics_doc) - set(_KINDS)
    if bad:
        raise ConfigError(f"unknown metric kinds: {', '.join(sorted(map(str, bad)))} "
                          f"(known: {', '.join(_KINDS)})", _line(metrics_doc))
    metrics: list[MetricConfig] = []
    seen: dict[str, int | None] = {}
    for section, kind in _KINDS.items():
        entries = metrics_doc.get(section) or []
        if not isinstance(entries, list):
            raise ConfigError(f"metrics.{section} must be a list", _line(metrics_doc))
        for e in entries:  # type: ignore[misc]  # not the `except ... as e` above
            if not isinstance(e, dict):
                raise ConfigError(f"a {kind} is a mapping with name, help and labels",
                                  _line(entries))
            line = _line(e)
            name = _need(e, "name", str, f"a {kind}")
            what = f"{kind} {name!r}"
            extra = set(e) - _METRIC_KEYS
            if extra:
                raise ConfigError(f"{what}: unknown keys {', '.join(sorted(map(str, extra)))}",
                                  line)
            if name in seen:
                raise ConfigError(f"metric {name!r} is defined twice (first on line "
                                  f"{seen[name]})", line)
            seen[name] = line
            labels = e.get("labels") or []
            if not isinstance(labels, list):
                raise ConfigError(f"{what}: labels must be a list", line)
            labs = [LabelSpec(lab, _line(labels, line)) for lab in labels]
            opts = {k: e[k] for k in _METRIC_KEYS - {"name", "help", "map", "labels"} if k in e}
            if kind != "histogram" and any(k.startswith("bucket_") for k in opts):
                raise ConfigError(f"{what}: bucket settings belong to histograms", line)
            metrics.append(MetricConfig(kind, name, str(e.get("help") or name),
                                        str(e.get("map") or name), labs, line, opts))
    if not metrics:
        raise ConfigError("no metrics defined", _line(metrics_doc))
    return Config(path, obj, list(programs), dict(maps), metrics)


def load_config(path: str) -> Config:
    """Read and parse the config file at *path*."""
    with open(path) as f:
        return parse_config(f.read(), path)
