"""Exceptions with messages that name the offending layer, shape or argument."""

from __future__ import annotations


class TfClrpError(ValueError):
    """Base class of every error tf_clrp raises on bad input."""


class ModelStructureError(TfClrpError):
    """The model cannot be walked (no functional graph, ambiguous inputs or outputs)."""


class UnsupportedLayerError(TfClrpError):
    """A layer has no relevance rule; the message names it and the escape hatch."""


class InputError(TfClrpError):
    """The input batch has the wrong rank, shape, dtype or non-finite values."""


class SelectionError(TfClrpError):
    """``neuron_selection`` or ``contrast`` does not fit the explained output."""


class NonFiniteError(TfClrpError):
    """Weights or a computed map hold NaN/Inf; the message names the layer and the samples."""
