"""ELF BPF objects: the container (:mod:`.reader`), program section names
(:mod:`.sections`), map definitions (:mod:`.btfmaps`), BTF fix-ups
(:mod:`.btffix`), and the object -> CollectionSpec assembly (:mod:`.build`).

The public entry point is :func:`fastbpf.load_collection_spec`.
"""

from __future__ import annotations

from .objfile import internal_map_name, object_name
from .reader import ELFFile
from .sections import SECTION_DEFS, SectionDef, match_section

__all__ = ["ELFFile", "SECTION_DEFS", "SectionDef", "match_section", "internal_map_name",
           "object_name"]
