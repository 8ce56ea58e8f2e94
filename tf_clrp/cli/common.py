"""What the ``tf-clrp`` commands share: errors, method names, analyzers, output files.

Nothing here imports TensorFlow at module level (``--help``, ``--version`` and ``list`` stay
fast); the TensorFlow-using helpers import it when called.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from tf_clrp.cli.names import PYTHON_ONLY, cli_methods

#: Methods used when ``--methods`` is not given.
DEFAULT_METHODS = ("gradient", "guided_backprop", "lrp.epsilon_plus", "clrp")


class CliError(Exception):
    """A user-facing error: printed without traceback, exit code ``code``."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


class UsageError(CliError):
    """Bad command-line usage (exit code 2)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, 2)


def _parse_methods(text: str | None, default: Sequence[str] = DEFAULT_METHODS) -> list[str]:
    names = [m.strip() for m in text.split(",") if m.strip()] if text else list(default)
    if not names:
        raise UsageError("--methods is empty")
    valid = cli_methods()
    unknown = [n for n in names if n not in valid]
    if unknown:
        import difflib

        hints = []
        for name in unknown:
            close = difflib.get_close_matches(name, valid, n=2)
            hints.append(f"{name!r}" + (f" (did you mean {' or '.join(close)}?)" if close else ""))
        extra = "".join(
            f" ({n!r} {PYTHON_ONLY[n]}: use a preset such as lrp.epsilon_plus)"
            for n in unknown
            if n in PYTHON_ONLY
        )
        raise UsageError(
            f"unknown method(s) {', '.join(hints)}{extra}; valid methods: {', '.join(valid)}"
        )
    if len(set(names)) != len(names):
        raise UsageError(f"--methods lists a method twice: {','.join(names)}")
    return names


def build_analyzer(
    name: str,
    model: Any,
    bounds: tuple[Any, Any] | None,
    compile_fn: bool,
    precision: str = "float32",
    output_index: int | None = None,
) -> Any:
    """Creates an analyzer with the CLI's optional settings where its entry takes them.

    Input bounds go where the registry entry says (``input_layer_rule=(low, high)``, the z^B
    first-layer rule, or ``low``/``high``); ``use_tf_function``, ``precision`` and a
    16-sample SmoothGrad are passed where declared. ``output_index`` (multi-output models)
    is required: a method that cannot take it is refused rather than explaining output 0.
    """
    import tf_clrp
    from tf_clrp.registry import entry

    declared = entry(name)
    if output_index is not None and not declared.takes("output_index"):
        raise CliError(
            f"method {name!r} cannot explain one output of a multi-output "
            "model (it takes no output_index)"
        )
    optional: dict[str, Any] = {
        "use_tf_function": compile_fn,
        "output_index": output_index,
        "precision": None if precision == "float32" else precision,
        "augment_by_n": 16 if name == "smoothgrad" else None,
    }
    if bounds is not None and declared.input_bounds == "low_high":
        optional.update(low=bounds[0], high=bounds[1])
    elif bounds is not None and declared.input_bounds == "input_layer_rule":
        optional["input_layer_rule"] = bounds
    options = {
        key: value for key, value in optional.items() if value is not None and declared.takes(key)
    }
    return tf_clrp.create_analyzer(name, model, **options)


def _check_outputs(paths: Sequence[str], force: bool) -> None:
    """Refuses existing outputs without ``--force`` and output names that are folders."""
    existing = [p for p in paths if os.path.lexists(p)]
    if existing and not force:
        shown = ", ".join(existing[:3]) + (
            f" and {len(existing) - 3} more" if len(existing) > 3 else ""
        )
        raise CliError(
            f"output file(s) exist: {shown}; use --force to overwrite or choose another --out"
        )
    for path in paths:
        if os.path.isdir(path):
            raise CliError(f"output path {path} is a directory")


def _write_text(path: str, text: str, force: bool) -> None:
    from tf_clrp._io import atomic_write

    atomic_write(path, text.encode("utf-8"), overwrite=force)
