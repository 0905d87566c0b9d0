"""Type stubs for fastbpf._btfscan (the one-pass BTF validator and name matcher)."""

from typing import Any

import numpy as np

def scan(w: Any, first_id: int = 1) -> tuple[Any, ...]: ...
def match_names(offs: Any, table: Any, needle: Any) -> np.ndarray: ...
