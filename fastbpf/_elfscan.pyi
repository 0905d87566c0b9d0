"""Type stubs for fastbpf._elfscan (the C scanners of ELF tables, .maps and DATASECs)."""

from typing import Any

def scan_elf(data: bytes) -> tuple[Any, ...]: ...
def fix_datasecs(spec: Any, words: Any, section_sizes: dict[Any, Any],
                 symbols: dict[Any, Any]) -> tuple[Any, ...]: ...
def map_defs(spec: Any, datasec: int, offsets: dict[Any, Any]) -> list[Any]: ...

class Func:
    label: str
    section: str
    shndx: int
    start: int
    size: int
    cache: Any
    code: Any
    def __init__(self, label: str, shndx: int, start: int, size: int, section: str) -> None: ...

def index_functions(sym_names: list[Any], sym_info: list[Any], sym_shndx: list[Any],
                    sym_value: list[Any], sym_size: list[Any], sec_names: list[Any],
                    sec_sizes: list[Any], prog_set: Any) -> tuple[Any, ...]: ...

def classify_sections(names: list[Any], types: list[Any], flags: list[Any], sizes: list[Any],
                      infos: list[Any]) -> tuple[Any, ...]: ...
def check_rels(data: bytes, off: int, size: int, little: bool, nsyms: int) -> int: ...
def scan_code(raw: bytes, little: bool, rel_offsets: list[Any]) -> tuple[Any, ...]: ...

def ext_rows(data: bytes, spec: Any, sections: dict[Any, Any]) -> dict[str, Any] | None: ...

class LinkTables:
    little: bool
    labels: list[str]
    index: dict[str, int]
    map_names: list[str]
    sections: list[Any]
    @property
    def functions(self) -> Any: ...
    def __init__(self, little: bool, funcs: dict[Any, Any], nsec: int, prog_secs: Any,
                 maps_shndx: int, legacy_maps_shndx: int, data_maps: dict[Any, Any],
                 map_syms: dict[Any, Any]) -> None: ...
    def add_section(self, shndx: int, raw: bytes, rels: bytes, sym_shndx: list[Any],
                    sym_value: list[Any], sym_info: list[Any], func_rows: bytes,
                    line_rows: bytes, core_offsets: bytes, btf_kinds: Any,
                    ntypes: int) -> bool: ...
    def linker(self, fds: list[Any], usable: bytes) -> Linker: ...

class Linker:
    def link(self, root: int) -> tuple[bytes, bytes, bytes] | None: ...
