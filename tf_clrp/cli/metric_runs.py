"""How ``tf-clrp evaluate`` computes each metric of ``tf_clrp.cli.metric_table``.

Every compute function takes the evaluation context, a method name and the metric's options
and returns per-sample :class:`Quantity` values; the library metric does the work
(``tf_clrp.metrics``), this module only feeds it the CLI's inputs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tf_clrp.cli.common import UsageError

Box = tuple[int, int, int, int]


@dataclass
class Quantity:
    """Per-sample values of one reported number.

    Attributes:
        name: Its row label (e.g. ``"morf"``).
        values: One value per sample; NaN = undefined for that sample (left out, not in n).
        groups: If given, the reported number is the unweighted mean over groups of the
            group means (Pointing Game: over classes); else the mean over samples.
    """

    name: str
    values: np.ndarray
    groups: np.ndarray | None = None


@dataclass
class EvalContext:
    """What the metrics are computed on: (image, class) pairs, the model and their maps.

    Attributes:
        x: (N, H, W, C) preprocessed model inputs, one row per (image, class) pair.
        classes: (N,) explained class per row.
        image_ids: (N,) which source image a row comes from.
        regions: per row the class's boxes ``(y0, x0, y1, x1)`` in input pixels, or None.
        scores: (N, K) the model's outputs on ``x``.
        scorer: the Keras model scoring the explained output (a view of one output of a
            multi-output model).
        explain: ``explain(method, x, classes) -> maps`` (maps of the rows' inputs).
        create: ``create(method, model) -> analyzer`` with the CLI's settings (bounds,
            compilation), for metrics explaining another model (randomisation).
        batch_size: rows per model call.
        seed: seed of random orders and noise.
        builtin: True for the built-in 2x2 mosaics.
    """

    x: np.ndarray
    classes: np.ndarray
    image_ids: np.ndarray
    regions: list[list[Box]] | None
    scores: np.ndarray
    scorer: Any
    explain: Callable[[str, np.ndarray, np.ndarray], np.ndarray]
    create: Callable[[str, Any], Any]
    batch_size: int
    seed: int
    builtin: bool
    _maps: dict[tuple[str, bytes], np.ndarray] = field(default_factory=dict)

    @property
    def size(self) -> tuple[int, int]:
        """(height, width) of the model input."""
        return int(self.x.shape[1]), int(self.x.shape[2])

    def maps(self, method: str, classes: np.ndarray | None = None) -> np.ndarray:
        """Maps of every row for ``classes`` (default: the explained ones), computed once."""
        classes = self.classes if classes is None else np.asarray(classes, np.int64)
        key = (method, classes.tobytes())
        if key not in self._maps:
            self._maps[key] = self.explain(method, self.x, classes)
        return self._maps[key]


# ----------------------------------------------------------------------------- pointing
def pointing(ctx: EvalContext, method: str, options: dict[str, Any]) -> list[Quantity]:
    """Pointing Game hit (1) or miss (0) per (image, class) pair; accuracy per class."""
    from tf_clrp.metrics import PointingGame

    game = PointingGame(tolerance=options["tolerance"])
    hits = game.update(ctx.maps(method), ctx.regions, ctx.classes)
    return [Quantity("accuracy", hits, groups=ctx.classes)]


def pointing_baselines(ctx: EvalContext, options: dict[str, Any]) -> dict[str, list[Quantity]]:
    """The centre point (user images; in a 2x2 mosaic every tile touches the centre) and the
    expected accuracy of a uniformly random pixel."""
    from tf_clrp.metrics import PointingGame, random_hit_rates

    rows: dict[str, list[Quantity]] = {}
    if not ctx.builtin:
        center = PointingGame(tolerance=options["tolerance"], baseline="center")
        hits = center.update(
            np.zeros((len(ctx.x), *ctx.size), np.float32), ctx.regions, ctx.classes
        )
        rows["(center baseline)"] = [Quantity("accuracy", hits, groups=ctx.classes)]
    chance = random_hit_rates(ctx.regions, ctx.size, options["tolerance"])
    rows["(random point)"] = [Quantity("accuracy", chance, groups=ctx.classes)]
    return rows


# ----------------------------------------------------------------------------- aopc
def check_aopc(ctx: EvalContext, options: dict[str, Any]) -> None:
    """Patch size within the image, steps within the number of patches."""
    height, width = ctx.size
    patch = options["aopc_patch"]
    if patch > max(height, width):
        raise UsageError(f"--aopc-patch {patch} exceeds the input size {height}x{width}")
    n_patches = -(-height // patch) * -(-width // patch)
    steps = options["aopc_steps"]
    if steps is not None and steps > n_patches:
        raise UsageError(
            f"--aopc-steps {steps} exceeds the {n_patches} patches of "
            f"{patch} px in a {height}x{width} input"
        )


def aopc(ctx: EvalContext, method: str, options: dict[str, Any]) -> list[Quantity]:
    """AOPC of the explained class's logit per image, for each chosen patch order."""
    from tf_clrp.metrics import region_perturbation

    maps = ctx.maps(method)
    result = []
    for order in options["aopc_order"]:
        run = region_perturbation(
            ctx.scorer,
            ctx.x,
            maps,
            targets=ctx.classes,
            order=order,
            patch_size=options["aopc_patch"],
            steps=options["aopc_steps"],
            perturbation=options["aopc_perturbation"],
            batch_size=ctx.batch_size,
            seed=ctx.seed,
        )
        result.append(Quantity(order, run.aopc))
    return result


# ----------------------------------------------------------------------------- discriminativeness
def rows_by_image(ctx: EvalContext) -> list[np.ndarray]:
    """Row indices of each image that has two or more explained classes."""
    groups = [np.flatnonzero(ctx.image_ids == i) for i in np.unique(ctx.image_ids)]
    return [rows for rows in groups if len(rows) >= 2]


def discriminativeness(ctx: EvalContext, method: str, options: dict[str, Any]) -> list[Quantity]:
    """Own / other relevance mass per (image, class) and map correlation per class pair."""
    from tf_clrp.metrics import discriminativeness_report

    maps = ctx.maps(method)
    own, other, correlation = [], [], []
    for rows in rows_by_image(ctx):
        report = discriminativeness_report(
            {int(ctx.classes[r]): maps[r : r + 1] for r in rows},
            {int(ctx.classes[r]): [ctx.regions[r]] for r in rows},
        )
        own.extend(float(v[0]) for v in report.own_mass.values())
        other.extend(float(v[0]) for v in report.other_mass.values())
        correlation.extend(float(v[0]) for v in report.correlation.values())
    return [
        Quantity("own_mass", np.asarray(own)),
        Quantity("other_mass", np.asarray(other)),
        Quantity("correlation", np.asarray(correlation)),
    ]


# ----------------------------------------------------------------------------- class correlation
def second_classes(ctx: EvalContext, choice: str | int) -> np.ndarray:
    """Per row the class compared with: the highest-scoring other class, or a fixed one."""
    if choice != "runner-up":
        return np.full(len(ctx.classes), int(choice), np.int64)
    others = ctx.scores.copy()
    others[np.arange(len(others)), ctx.classes] = -np.inf
    return others.argmax(axis=1)


def check_second_class(ctx: EvalContext, options: dict[str, Any]) -> None:
    """A fixed second class must be one of the model's outputs."""
    choice = options["second_class"]
    if choice != "runner-up" and choice >= ctx.scores.shape[1]:
        raise UsageError(f"--second-class {choice} >= the model's {ctx.scores.shape[1]} outputs")


def class_correlation(ctx: EvalContext, method: str, options: dict[str, Any]) -> list[Quantity]:
    """Pearson r between the map of the explained class and of the second class, per row
    (NaN where both classes are the same)."""
    from tf_clrp.metrics import map_correlation

    second = second_classes(ctx, options["second_class"])
    values = map_correlation(ctx.maps(method), ctx.maps(method, second))
    values[second == ctx.classes] = np.nan
    return [Quantity("correlation", values)]


# ----------------------------------------------------------------------------- insertion / deletion
def insertion_deletion(ctx: EvalContext, method: str, options: dict[str, Any]) -> list[Quantity]:
    """Deletion and/or insertion AUC per (image, class) pair."""
    from tf_clrp.metrics.insertion_deletion import insertion_deletion as curves

    height, width = ctx.size
    share = options["insdel_fraction"]
    per_step = None if share is None else max(1, int(round(share * height * width)))
    substrate = options["insdel_substrate"]
    maps = ctx.maps(method)
    result = []
    for mode in options["insdel_mode"]:
        run = curves(
            ctx.scorer,
            ctx.x,
            maps,
            mode=mode,
            targets=ctx.classes,
            pixels_per_step=per_step,
            substrate=None if substrate == "default" else substrate,
            batch_size=ctx.batch_size,
            seed=ctx.seed,
        )
        result.append(Quantity(mode, run.auc))
    return result


# ----------------------------------------------------------------------------- randomisation
def randomization(ctx: EvalContext, method: str, options: dict[str, Any]) -> list[Quantity]:
    """Spearman and SSIM between the original |map| and that of the fully randomised model
    (every layer with weights re-initialised in one step: the last step of the cascading
    test, one analyzer pass), per (image, class) pair."""
    from tf_clrp.metrics.randomization import model_randomization, weighted_layers

    def explain(model: Any, x: np.ndarray, targets: np.ndarray) -> np.ndarray:
        analyzer = ctx.create(method, model)
        return analyzer.analyze(x, neuron_selection=targets, batch_size=ctx.batch_size)

    run = model_randomization(
        ctx.scorer,
        ctx.x,
        explain,
        targets=ctx.classes,
        layers=[weighted_layers(ctx.scorer)],
        seed=ctx.seed,
    )
    return [Quantity("spearman", run.spearman[-1]), Quantity("ssim", run.ssim[-1])]
