"""The ``--preprocess`` presets: the CLI's names for ``tf_clrp.bounds``' preprocessings.

Imports no TensorFlow (``tf-clrp list`` prints this table).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from tf_clrp.bounds import PREPROCESSING_TABLE, input_bounds


@dataclass(frozen=True)
class Preprocessing:
    """A ``--preprocess`` preset: one of ``tf_clrp.bounds.PREPROCESSING_TABLE``."""

    bounds_name: str

    @property
    def apply(self) -> Callable[[np.ndarray], np.ndarray]:
        """The preprocessing function (0..255 RGB images -> model inputs)."""
        return PREPROCESSING_TABLE[self.bounds_name].apply

    @property
    def description(self) -> str:
        """One line for ``tf-clrp list``."""
        return PREPROCESSING_TABLE[self.bounds_name].description

    @property
    def rgb_only(self) -> bool:
        """Needs three RGB channels."""
        return PREPROCESSING_TABLE[self.bounds_name].rgb_only

    @property
    def low(self) -> np.ndarray:
        """Lowest preprocessed value (float32 scalar or per channel)."""
        return input_bounds(self.bounds_name)[0]

    @property
    def high(self) -> np.ndarray:
        """Highest preprocessed value (float32 scalar or per channel)."""
        return input_bounds(self.bounds_name)[1]


#: ``--preprocess`` name -> preset (``none`` is ``tf_clrp.bounds``' "raw").
PREPROCESSING: dict[str, Preprocessing] = {
    cli_name: Preprocessing(name)
    for cli_name, name in (
        ("none", "raw"),
        ("unit", "unit"),
        ("symmetric", "symmetric"),
        ("caffe", "caffe"),
        ("torch", "torch"),
        ("effnet_lite", "effnet_lite"),
    )
}
