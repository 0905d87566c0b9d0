"""Attaching programs to hooks. Every attachment is a :class:`Link`."""

from ._base import DetachLink, FDLink, Link, LinkInfo, link_ids

__all__ = ["Link", "FDLink", "DetachLink", "LinkInfo", "link_ids"]
