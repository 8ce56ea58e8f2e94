"""``tf-clrp list``: analyzer names and preprocessing presets, without importing TensorFlow."""

from __future__ import annotations

import argparse

import numpy as np

from tf_clrp.cli.names import ANALYZER_GROUPS, PYTHON_ONLY
from tf_clrp.cli.preprocessing import PREPROCESSING
from tf_clrp.registry import ANALYZERS, ENGINE_OPTIONS, LRP_OPTIONS

#: How ``--options`` marks an entry's ``input_bounds`` (the CLI passes ``--preprocess``' bounds).
_BOUNDS_NOTE = {
    "input_layer_rule": "z^B input bounds as input_layer_rule",
    "low_high": "z^B input bounds as low/high",
}


def _options_line(name: str) -> str:
    declared = ANALYZERS[name]
    own = ", ".join(f"{key}={value!r}" for key, value in declared.options.items())
    notes = [own or "no own options"]
    if declared.input_bounds:
        notes.append(_BOUNDS_NOTE[declared.input_bounds])
    return "      " + "; ".join(notes)


def cmd_list(args: argparse.Namespace) -> int:
    """Prints the analyzers (with ``--options``: their options), presets and preprocessings."""
    if getattr(args, "options", False):
        print(
            "options of every analyzer but the model-agnostic ones: "
            + ", ".join(f"{k}={v!r}" for k, v in ENGINE_OPTIONS.items())
        )
        print(
            "options of every LRP rule and preset name (lrp.*): "
            + ", ".join(f"{k}={v!r}" for k, v in LRP_OPTIONS.items())
        )
    for title, members in ANALYZER_GROUPS.items():
        print(f"{title}:")
        for name in members:
            note = f"  (Python API only: {PYTHON_ONLY[name]})" if name in PYTHON_ONLY else ""
            print(f"  {name}{note}")
            if getattr(args, "options", False):
                print(_options_line(name))
    print("preprocessing presets (--preprocess; bounds feed the z^B input-layer rule):")
    for key, prep in PREPROCESSING.items():
        low = np.round(np.asarray(prep.low, np.float64), 3).tolist()
        high = np.round(np.asarray(prep.high, np.float64), 3).tolist()
        print(f"  {key:<12} {prep.description}; bounds {low} .. {high}")
    return 0
