"""``tf-clrp list``: analyzer names and preprocessing presets, without importing TensorFlow."""

from __future__ import annotations

import argparse

import numpy as np

from tf_clrp.cli.names import ANALYZER_GROUPS, PYTHON_ONLY
from tf_clrp.cli.preprocessing import PREPROCESSING


def cmd_list(args: argparse.Namespace) -> int:
    """Prints the analyzers, presets and preprocessing options."""
    for title, members in ANALYZER_GROUPS.items():
        print(f"{title}:")
        for name in members:
            note = f"  (Python API only: {PYTHON_ONLY[name]})" if name in PYTHON_ONLY else ""
            print(f"  {name}{note}")
    print("preprocessing presets (--preprocess; bounds feed the z^B input-layer rule):")
    for key, prep in PREPROCESSING.items():
        low = np.round(np.asarray(prep.low, np.float64), 3).tolist()
        high = np.round(np.asarray(prep.high, np.float64), 3).tolist()
        print(f"  {key:<12} {prep.description}; bounds {low} .. {high}")
    return 0
