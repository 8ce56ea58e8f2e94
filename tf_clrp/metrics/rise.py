"""Moved to :mod:`tf_clrp.analyzers.rise`; this old import path re-exports it."""

from tf_clrp.analyzers.rise import RISE, make_masks

__all__ = ["RISE", "make_masks"]
