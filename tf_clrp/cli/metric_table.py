"""The metrics ``tf-clrp evaluate`` offers, as declared data (imports no TensorFlow).

One :class:`MetricSpec` per metric: its name, what it needs from the inputs, its options
(flag, type, default, help) and the function computing it (``module:function``, imported
only when the metric runs). Adding a metric to the CLI is one entry in :data:`METRICS` plus
its function in ``tf_clrp.cli.metric_runs``; the parser, ``--help``, the input checks and
the output tables follow from the entry.
"""

from __future__ import annotations

import argparse
import importlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

#: Inputs a metric may need (``MetricSpec.needs``), with what provides them.
INPUTS = {
    "boxes": "--boxes (or the built-in mosaics)",
    "two_classes": "images with >= 2 boxed classes",
}

AOPC_ORDERS = ("morf", "lerf", "random")
PERTURBATIONS = ("mean", "zero", "blur", "noise")
INSDEL_MODES = ("deletion", "insertion")


def positive_int(text: str) -> int:
    """argparse type: a whole number >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text}")
    return value


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None


def finite_non_negative(text: str) -> float:
    """argparse type: a finite float >= 0 (NaN, inf and negatives are usage errors)."""
    value = _number(text)
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return value


def finite_positive(text: str) -> float:
    """argparse type: a finite float > 0."""
    value = finite_non_negative(text)
    if value == 0:
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def choice_list(choices: Sequence[str]) -> Callable[[str], tuple[str, ...]]:
    """argparse type: a comma-separated, duplicate-free selection from ``choices``."""

    def parse(text: str) -> tuple[str, ...]:
        items = tuple(item.strip() for item in text.split(",") if item.strip())
        bad = [item for item in items if item not in choices]
        if not items or bad:
            raise argparse.ArgumentTypeError(
                f"{text!r}: choose one or more of {','.join(choices)} (comma-separated)"
            )
        if len(set(items)) != len(items):
            raise argparse.ArgumentTypeError(f"{text!r} lists an entry twice")
        return items

    return parse


def fraction(text: str) -> float:
    """argparse type: a share in (0, 1]."""
    value = _number(text)
    if not 0 < value <= 1:  # NaN fails too
        raise argparse.ArgumentTypeError(f"must lie in (0, 1], got {text}")
    return value


def one_of(choices: Sequence[str]) -> Callable[[str], str]:
    """argparse type: one of ``choices``."""

    def parse(text: str) -> str:
        if text not in choices:
            raise argparse.ArgumentTypeError(f"{text!r}: choose one of {', '.join(choices)}")
        return text

    return parse


def second_class(text: str) -> str | int:
    """argparse type: ``runner-up`` or a class index >= 0."""
    if text == "runner-up":
        return text
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: use 'runner-up' or a class index >= 0")
    return value


@dataclass(frozen=True)
class MetricOption:
    """One option of a metric: ``--flag`` parsed by ``type``, ``default`` when not given."""

    flag: str
    type: Callable[[str], Any]
    default: Any
    help: str
    metavar: str | None = None

    @property
    def dest(self) -> str:
        """The attribute name argparse stores the value under."""
        return self.flag.lstrip("-").replace("-", "_")


@dataclass(frozen=True)
class MetricSpec:
    """One metric of ``tf-clrp evaluate``.

    Attributes:
        name: The ``--metric`` name.
        summary: One line for ``--help`` and the table title.
        needs: Keys of :data:`INPUTS` the metric cannot run without.
        options: Its options.
        compute: ``"module:function"`` computing it (see ``tf_clrp.cli.metric_runs``).
        better: How to read the numbers, printed under the table.
        baselines: ``"module:function"`` giving reference rows (e.g. a random point), or
            None.
        check: ``"module:function"`` checking the options against the input size before
            any analyzer runs (raises ``UsageError``), or None.
    """

    name: str
    summary: str
    needs: frozenset[str]
    options: tuple[MetricOption, ...]
    compute: str
    better: str
    baselines: str | None = None
    check: str | None = None

    def function(self, which: str = "compute") -> Callable[..., Any] | None:
        """The ``compute``, ``baselines`` or ``check`` function (imported on first use)."""
        target = getattr(self, which)
        if target is None:
            return None
        module, name = target.split(":")
        return getattr(importlib.import_module(module), name)


_RUNS = "tf_clrp.cli.metric_runs"

METRICS: dict[str, MetricSpec] = {
    spec.name: spec
    for spec in (
        MetricSpec(
            name="pointing",
            summary="Pointing Game: is the map's maximum on the class's box?",
            needs=frozenset({"boxes"}),
            options=(
                MetricOption(
                    "--tolerance",
                    finite_non_negative,
                    15.0,
                    "pointing: hit radius in pixels at 224 px, finite and >= 0 (default 15)",
                    "PX",
                ),
            ),
            compute=f"{_RUNS}:pointing",
            baselines=f"{_RUNS}:pointing_baselines",
            better="accuracy = mean over classes of hits / (hits + misses); higher is better",
        ),
        MetricSpec(
            name="aopc",
            summary="region perturbation (Samek et al. 2017): AOPC per patch order",
            needs=frozenset(),
            options=(
                MetricOption(
                    "--aopc-order",
                    choice_list(AOPC_ORDERS),
                    ("morf", "lerf"),
                    "aopc: patch orders, comma-separated from morf (most relevant "
                    "first), lerf (least relevant first), random (default morf,lerf)",
                    "ORDERS",
                ),
                MetricOption(
                    "--aopc-perturbation",
                    one_of(PERTURBATIONS),
                    "mean",
                    "aopc: what a removed patch becomes: mean (per-image channel "
                    "mean), zero, blur (sigma = patch / 2), noise (uniform over the "
                    "batch's range) (default mean)",
                    "P",
                ),
                MetricOption(
                    "--aopc-patch",
                    positive_int,
                    8,
                    "aopc: patch side in pixels of the model input (default 8)",
                    "PX",
                ),
                MetricOption(
                    "--aopc-steps",
                    positive_int,
                    None,
                    "aopc: patches removed, 1..number of patches (default "
                    "min(100, number of patches))",
                    "K",
                ),
            ),
            compute=f"{_RUNS}:aopc",
            check=f"{_RUNS}:check_aopc",
            better="AOPC = mean drop of the class logit over steps 0..K; MoRF: higher is "
            "better, LeRF: lower is better, random: the reference",
        ),
        MetricSpec(
            name="discriminativeness",
            summary="class-discriminativeness on images with several boxed classes",
            needs=frozenset({"boxes", "two_classes"}),
            options=(),
            compute=f"{_RUNS}:discriminativeness",
            better="own_mass = share of a class map's positive relevance on its own boxes "
            "(higher is better), other_mass = on the other classes' boxes (lower is "
            "better), correlation = Pearson r of two classes' maps (lower is better)",
        ),
        MetricSpec(
            name="class_correlation",
            summary="Pearson correlation of the maps of the explained and a second class",
            needs=frozenset(),
            options=(
                MetricOption(
                    "--second-class",
                    second_class,
                    "runner-up",
                    "class_correlation: the class to compare with: 'runner-up' "
                    "(highest other score) or a class index (default runner-up)",
                    "C",
                ),
            ),
            compute=f"{_RUNS}:class_correlation",
            check=f"{_RUNS}:check_second_class",
            better="correlation near 1 = the map ignores which class is explained; lower is "
            "more class-discriminative",
        ),
        MetricSpec(
            name="insertion_deletion",
            summary="insertion / deletion AUC (Petsiuk et al. 2018) of the class probability",
            needs=frozenset(),
            options=(
                MetricOption(
                    "--insdel-mode",
                    choice_list(INSDEL_MODES),
                    INSDEL_MODES,
                    "insertion_deletion: curves, comma-separated from deletion, "
                    "insertion (default both)",
                    "MODES",
                ),
                MetricOption(
                    "--insdel-fraction",
                    fraction,
                    None,
                    "insertion_deletion: share of the pixels changed per step, in "
                    "(0, 1] (default one image row: 1 / H)",
                    "F",
                ),
                MetricOption(
                    "--insdel-substrate",
                    one_of(("default", *PERTURBATIONS)),
                    "default",
                    "insertion_deletion: what deleted pixels become / insertion starts "
                    "from: default (zero for deletion, blur sigma 5 for insertion), "
                    "mean, zero, blur, noise",
                    "S",
                ),
            ),
            compute=f"{_RUNS}:insertion_deletion",
            better="AUC of the class score (the model's output, a probability for softmax "
            "models) against the changed share of pixels; deletion: lower is better, "
            "insertion: higher is better",
        ),
        MetricSpec(
            name="randomization",
            summary="model-parameter randomisation sanity check (Adebayo et al. 2018): "
            "every layer with weights re-initialised",
            needs=frozenset(),
            options=(),
            compute=f"{_RUNS}:randomization",
            better="similarity of the |map| of the fully randomised model to the original "
            "(Spearman, SSIM); lower = the map depends on the weights, as it should",
        ),
    )
}


def add_metric_options(command: argparse.ArgumentParser) -> None:
    """``--metric`` and every metric's options (defaults None: applied by :func:`resolve`)."""
    command.add_argument(
        "--metric",
        action="append",
        metavar="NAME",
        help="metric(s) to compute, repeatable or comma-separated: "
        f"{', '.join(METRICS)} (default pointing)",
    )
    for spec in METRICS.values():
        if not spec.options:
            continue
        group = command.add_argument_group(f"--metric {spec.name}", spec.summary)
        for option in spec.options:
            group.add_argument(
                option.flag,
                type=option.type,
                default=None,
                metavar=option.metavar,
                help=option.help,
            )


def metrics_epilog() -> str:
    """The ``--metric`` names with what each needs, for ``tf-clrp evaluate --help``."""
    lines = ["metrics (--metric NAME):"]
    for spec in METRICS.values():
        needs = f" [needs {', '.join(INPUTS[k] for k in sorted(spec.needs))}]" if spec.needs else ""
        lines.append(f"  {spec.name:<19}{spec.summary}{needs}")
    return "\n".join(lines)


def selected_metrics(values: Sequence[str] | None) -> list[MetricSpec]:
    """The specs named by the ``--metric`` values (default: pointing).

    Raises:
        ValueError: an unknown or repeated name (the message names ``--metric``).
    """
    names = [n.strip() for v in (values or ["pointing"]) for n in v.split(",") if n.strip()]
    if not names:
        raise ValueError("--metric is empty")
    unknown = [n for n in names if n not in METRICS]
    if unknown:
        raise ValueError(
            f"--metric: unknown metric(s) {', '.join(map(repr, unknown))}; "
            f"valid: {', '.join(METRICS)}"
        )
    if len(set(names)) != len(names):
        raise ValueError(f"--metric lists a metric twice: {','.join(names)}")
    return [METRICS[n] for n in names]


def resolve_options(
    args: argparse.Namespace, chosen: Sequence[MetricSpec]
) -> dict[str, dict[str, Any]]:
    """Per chosen metric its option values (given or default), by option dest.

    Raises:
        ValueError: an option of a metric that was not chosen was given.
    """
    names = {spec.name for spec in chosen}
    for spec in METRICS.values():
        for option in spec.options:
            if spec.name not in names and getattr(args, option.dest, None) is not None:
                raise ValueError(
                    f"{option.flag} applies to --metric {spec.name}, which is not selected"
                )
    return {
        spec.name: {
            o.dest: (o.default if getattr(args, o.dest, None) is None else getattr(args, o.dest))
            for o in spec.options
        }
        for spec in chosen
    }
