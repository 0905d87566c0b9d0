"""Map-backed metrics: Prometheus collectors, dataframes and terminal histograms.

- :class:`MapCollector` turns one BPF map into one Prometheus metric family
  (counter, gauge or histogram), decoding key fields into labels the way
  Cloudflare's ebpf_exporter does, with one batch read and numpy per scrape.
- :func:`to_dataframe` / :func:`to_arrow` (also ``Map.to_dataframe()`` and
  ``Map.to_arrow()``) give a map's entries as columns.
- :func:`render_histogram` draws a bucketed map the way BCC's
  ``print_log2_hist`` does; :func:`cli_hist` is ``fastbpf map hist``.
- :mod:`fastbpf.metrics.exporter` is ``fastbpf export CONFIG.yaml``.

``prometheus_client`` (extra ``metrics``), pandas and pyarrow are imported
only by the functions that need them.
"""

from __future__ import annotations

from .collector import MapCollector, group_labels, histogram_le
from .decoders import ConfigError, LabelSpec, factorize
from .frames import to_arrow, to_dataframe
from .hist import cli_hist, render_histogram

__all__ = ["MapCollector", "ConfigError", "LabelSpec", "factorize", "group_labels",
           "histogram_le", "to_arrow", "to_dataframe", "render_histogram", "cli_hist"]
