"""Type stubs for fastbpf._progrun (the BPF_PROG_TEST_RUN fast path)."""

from typing import Any, Iterator

import numpy as np

class TestRunResult:
    retval: int
    duration_ns: int
    def __init__(self, retval: int = 0, data: np.ndarray | None = None,
                 ctx: np.ndarray | None = None, duration_ns: int = 0) -> None: ...
    @property
    def data(self) -> np.ndarray: ...
    @property
    def ctx(self) -> np.ndarray | None: ...
    def __iter__(self) -> Iterator[Any]: ...

class ProgramBase:
    @property
    def fd(self) -> int: ...
    @property
    def closed(self) -> bool: ...
    def close(self) -> None: ...
    def test_run(self, data: Any = None, ctx: Any = None, repeat: int = 1, *,
                 data_out_size: int | None = None, ctx_out_size: int | None = None,
                 flags: int = 0, cpu: int = 0, batch_size: int = 0) -> TestRunResult: ...

def test_run(prog_fd: int, data_in: Any, ctx_in: Any = None, repeat: int = 1,
             data_out_size: int = -1, ctx_out_size: int = -1, flags: int = 0, cpu: int = 0,
             batch_size: int = 0, ctx_inout: Any = None,
             release_gil: bool = False) -> TestRunResult: ...
