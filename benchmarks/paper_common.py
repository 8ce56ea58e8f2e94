"""Shared machinery of the paper-claims benchmarks (``paper_pointing_game.py``, ``paper_mnist.py``).

A *scene* is one image showing several classes, each with its ground-truth boxes. Every
(scene, class) pair is a *row*; every method explains every row, the maps are reduced to
(H, W) and scored with ``tf_clrp.metrics`` (Pointing Game, class-discriminativeness,
region perturbation / AOPC). Not a library module: it lives next to the scripts that use it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from paper_scores import (  # noqa: F401  (re-exported: the scripts use pc.<name>)
    BOOTSTRAP_RESAMPLES,
    BOOTSTRAP_SEED,
    AopcResult,
    aopc_table,
    bootstrap_interval,
    class_mean,
    clrp_parts_stats,
    discriminativeness,
    fmt,
    pointing_table,
    row_hits,
    scored_cell,
)

import tf_clrp

Box = tuple[int, int, int, int]

#: The repository (result files and figures are written below it by default).
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: Maps of these analyzers are saliency magnitudes: |map| max over channels (TorchRay's
#: ``gradient_to_saliency``); all others are summed over channels (signed relevance).
ABS_MAX = frozenset({"gradient", "guided_backprop", "deconvnet", "guided_grad_cam"})

#: Analyzers that only call the model (through a memoising :class:`Scorer`, so that the
#: classes of one scene share their perturbed forward passes); they take their options from
#: ``paper_methods``' arguments.
MODEL_AGNOSTIC = frozenset({"occlusion", "prediction_difference", "rise"})


@dataclass
class SharedConfig:
    """The configuration both paper scripts share (flags of ``add_common_args``); each
    script's Config adds its own fields."""

    methods: tuple[str, ...] | None = None
    ablations: bool = True
    aopc: bool = True
    aopc_steps: int = 20
    tolerance: float = 15.0
    seed: int = 0


@dataclass(frozen=True)
class MethodSpec:
    """One benchmarked method: a registry analyzer, its options and per-call options.

    Attributes:
        analyzer: name for ``tf_clrp.create_analyzer``.
        options: constructor keyword arguments.
        contrast: CLRP's contrast for this method; ``"rival"`` = the other present class
            with the highest logit (per row).
        parts: also keep CLRP's target and dual maps (for the investigation).
    """

    analyzer: str
    options: tuple[tuple[str, Any], ...] = ()
    contrast: Any = None
    parts: bool = False

    @property
    def reduce(self) -> str:
        """ "absmax" for gradient-type saliency, else "sum"."""
        return "absmax" if self.analyzer in ABS_MAX else "sum"

    @property
    def model_agnostic(self) -> bool:
        """True for occlusion / prediction difference / RISE (they call the model, not the
        engine)."""
        return self.analyzer in MODEL_AGNOSTIC

    def key(self) -> tuple[str, str]:
        """Analyzers with equal keys are created once and shared (e.g. CLRP contrasts)."""
        return self.analyzer, repr(self.options)


#: The compared methods, in table order: (table name, registry analyzer, z^B on the first
#: layer, CLRP contrast, keep CLRP's parts). Model-agnostic analyzers take their options
#: from ``paper_methods``' arguments. A new analyzer is one line here.
METHOD_TABLE: tuple[tuple[str, str, bool, Any, bool], ...] = (
    ("gradient", "gradient", False, None, False),
    ("input_t_gradient", "input_t_gradient", False, None, False),
    ("guided_backprop", "guided_backprop", False, None, False),
    ("deconvnet", "deconvnet", False, None, False),
    ("lrp.z_plus", "lrp.z_plus", True, None, False),
    ("lrp.epsilon_plus", "lrp.epsilon_plus", False, None, False),
    ("lrp.sequential_preset_a", "lrp.sequential_preset_a", False, None, False),
    ("clrp (others)", "clrp", True, "others", True),
    ("clrp (negated)", "clrp", True, "negated", False),
    ("clrp (rival)", "clrp", True, "rival", False),
    ("sglrp", "sglrp", True, None, False),
    ("occlusion", "occlusion", False, None, False),
    ("prediction_difference", "prediction_difference", False, None, False),
    ("rise", "rise", False, None, False),
    ("grad_cam", "grad_cam", False, None, False),
    ("grad_cam_plus_plus", "grad_cam_plus_plus", False, None, False),
    ("layer_cam", "layer_cam", False, None, False),
    ("guided_grad_cam", "guided_grad_cam", False, None, False),
)

#: Variants that isolate the z^B input rule (Pointing Game / discriminativeness only).
ABLATION_TABLE: tuple[tuple[str, str, bool, Any, bool], ...] = (
    ("lrp.z_plus (no z^B)", "lrp.z_plus", False, None, False),
    ("clrp (others, per-image z^B)", "clrp", False, "others", False),
)


def _specs(
    table: Sequence[tuple[str, str, bool, Any, bool]],
    bounds: tuple[float, float] | None,
    agnostic: dict[str, dict[str, Any]],
) -> dict[str, MethodSpec]:
    """MethodSpecs of a method table (``bounds`` for the rows with z^B)."""
    specs = {}
    for name, analyzer, zb, contrast, parts in table:
        options = tuple(sorted(agnostic.get(analyzer, {}).items()))
        if zb:
            if bounds is None:
                raise ValueError(f"{name} needs the input bounds")
            options = (("input_layer_rule", tuple(float(b) for b in bounds)),)
        specs[name] = MethodSpec(analyzer, options, contrast, parts)
    return specs


def paper_methods(
    bounds: tuple[float, float],
    occlusion: dict[str, Any],
    prediction_difference: dict[str, Any],
    rise: dict[str, Any] | None = None,
) -> dict[str, MethodSpec]:
    """The compared methods of ``METHOD_TABLE``, keyed by their table name.

    Args:
        bounds: (low, high) of the model's input (z^B first-layer rule).
        occlusion: Occlusion options (window, stride, ...).
        prediction_difference: PredictionDifference options.
        rise: RISE options (n_masks, grid_size, ...); None: RISE's defaults.

    Returns:
        name -> MethodSpec, in table order.
    """
    return _specs(
        METHOD_TABLE,
        bounds,
        {
            "occlusion": occlusion,
            "prediction_difference": prediction_difference,
            "rise": rise or {},
        },
    )


def split_methods(text: str | None) -> tuple[str, ...] | None:
    """``--methods`` text -> table names: split at commas outside parentheses (so that
    "clrp (others, per-image z^B)" stays one name); None stays None."""
    if text is None:
        return None
    return tuple(n.strip() for n in re.split(r",(?![^()]*\))", text) if n.strip())


def ablation_methods() -> dict[str, MethodSpec]:
    """The methods of ``ABLATION_TABLE`` (Pointing Game / discriminativeness only)."""
    return _specs(ABLATION_TABLE, None, {})


def select_methods(
    cfg: Any, bounds: tuple[float, float], batch_size: int, rise: dict[str, Any]
) -> tuple[dict[str, MethodSpec], dict[str, MethodSpec]]:
    """A script's methods and z^B ablations, filtered by ``cfg.methods``.

    Args:
        cfg: the script's Config (``methods``, ``ablations``, ``occlusion_window``,
            ``pd_samples``, ``rise_masks``).
        bounds: (low, high) of the model's input.
        batch_size: perturbed images per model call (occlusion, prediction difference, RISE).
        rise: RISE's mask-shape options (grid_size, ...).

    Returns:
        (main methods, ablations), name -> MethodSpec.
    """
    win = cfg.occlusion_window
    methods = paper_methods(
        bounds,
        occlusion={"window": win, "stride": win, "batch_size": batch_size},
        prediction_difference={
            "window": win,
            "stride": win,
            "n_samples": cfg.pd_samples,
            "batch_size": batch_size,
        },
        rise={**rise, "n_masks": cfg.rise_masks, "batch_size": batch_size},
    )
    ablations = ablation_methods() if cfg.ablations else {}
    if cfg.methods is not None:
        known = {*methods, *ablation_methods()}
        unknown = set(cfg.methods) - known
        if unknown:
            raise ValueError(f"unknown methods {sorted(unknown)}; choose from {sorted(known)}")
        methods = {k: v for k, v in methods.items() if k in cfg.methods}
        ablations = {k: v for k, v in ablations.items() if k in cfg.methods}
    return methods, ablations


def add_common_args(p: Any, defaults: Any) -> None:
    """The flags both paper scripts share (their defaults from the script's Config)."""
    p.add_argument(
        "--methods",
        default=None,
        help="comma-separated subset of the table names (METHOD_TABLE, ablations)",
    )
    p.add_argument("--no-ablations", action="store_true", help="skip the z^B ablations")
    p.add_argument("--no-aopc", action="store_true", help="skip region perturbation")
    p.add_argument("--aopc-steps", type=int, default=defaults.aopc_steps)
    p.add_argument("--pd-samples", type=int, default=defaults.pd_samples)
    p.add_argument(
        "--rise-masks",
        type=int,
        default=defaults.rise_masks,
        help="RISE masks per map (the same seeded set for every map)",
    )
    p.add_argument("--seed", type=int, default=defaults.seed)
    p.add_argument(
        "--out",
        default=os.path.join(ROOT, "benchmarks", "results"),
        help="folder of the result files",
    )
    p.add_argument(
        "--figures", default=os.path.join(ROOT, "docs", "figures"), help="folder of the figures"
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def common_options(args: Any) -> dict[str, Any]:
    """Config keyword arguments from the flags of ``add_common_args``."""
    return {
        "methods": split_methods(args.methods),
        "ablations": not args.no_ablations,
        "aopc": not args.no_aopc,
        "aopc_steps": args.aopc_steps,
        "pd_samples": args.pd_samples,
        "rise_masks": args.rise_masks,
        "seed": args.seed,
    }


def print_report(markdown_text: str, paths: dict[str, str]) -> None:
    """Print a run's tables and the files it wrote."""
    print(markdown_text)
    for kind, path in paths.items():
        print(f"wrote {kind}: {path}")


def command_line(script: str, argv: Sequence[str] | None) -> str:
    """``python benchmarks/<script> <args>`` of this invocation (for the result files)."""
    import sys

    args = sys.argv[1:] if argv is None else argv
    return f"python benchmarks/{os.path.basename(script)} {' '.join(args)}".strip()


# ----------------------------------------------------------------------------- model calls
class Scorer:
    """``images -> logits`` (numpy) through a compiled forward, with an optional memo.

    The memo (keyed by a hash of the batch bytes) lets occlusion / prediction difference
    explain several classes of one scene from one set of model calls: their perturbed
    batches do not depend on the class.
    """

    def __init__(self, model: Any, batch_size: int = 64) -> None:
        import tensorflow as tf

        spec = tf.TensorSpec((None, *model.input_shape[1:]), tf.float32)
        self._fn = tf.function(lambda x: model(x, training=False), input_signature=[spec])
        self.batch_size = batch_size
        self.memo: dict[bytes, np.ndarray] | None = None
        self.calls = 0

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float32)
        key = hashlib.blake2b(x.tobytes(), digest_size=16).digest() + bytes(str(x.shape), "ascii")
        if self.memo is not None and key in self.memo:
            return self.memo[key]
        outs = [
            np.asarray(self._fn(x[i : i + self.batch_size]), dtype=np.float64)
            for i in range(0, len(x), self.batch_size)
        ]
        out = np.concatenate(outs) if outs else np.zeros((0,))
        self.calls += len(x)
        if self.memo is not None:
            self.memo[key] = out
        return out


def reduce_map(maps: np.ndarray, how: str) -> np.ndarray:
    """(N, H, W, C) -> (N, H, W): channel sum, or max of |.| over channels."""
    maps = np.asarray(maps, dtype=np.float32)
    if maps.ndim == 3:
        return maps
    return np.abs(maps).max(axis=-1) if how == "absmax" else maps.sum(axis=-1)


def progress_bar(total: int, desc: str, enabled: bool) -> Any:
    """A tqdm bar (or a no-op stand-in when disabled / tqdm missing)."""
    if enabled:
        try:
            from tqdm.auto import tqdm

            return tqdm(total=total, desc=desc, leave=False)
        except ImportError:  # pragma: no cover - tqdm is a test dependency
            pass

    class _Null:
        def update(self, n: int = 1) -> None:
            """No-op."""

        def set_description(self, text: str) -> None:
            """No-op."""

        def close(self) -> None:
            """No-op."""

    return _Null()


@dataclass
class Rows:
    """The explained (scene, class) pairs of a run.

    Attributes:
        x: model inputs (R, H, W, C), one per row (the scene's image, repeated).
        classes: explained class per row.
        rivals: the other present class with the highest logit, per row.
        scene: scene index per row.
        regions: ground-truth boxes of the row's class.
    """

    x: np.ndarray
    classes: np.ndarray
    rivals: np.ndarray
    scene: np.ndarray
    regions: list[list[Box]]


def build_rows(
    images: Sequence[np.ndarray], regions: Sequence[dict[int, list[Box]]], logits: np.ndarray
) -> Rows:
    """One row per (scene, present class); ``images`` are model inputs (H, W, C)."""
    xs, cls, riv, scene, regs = [], [], [], [], []
    for s, (img, reg) in enumerate(zip(images, regions)):
        present = list(reg)
        for c in present:
            others = [d for d in present if d != c]
            rival = max(others, key=lambda d: logits[s, d]) if others else c
            xs.append(img)
            cls.append(c)
            riv.append(rival)
            scene.append(s)
            regs.append(list(reg[c]))
    return Rows(
        np.stack(xs).astype(np.float32), np.array(cls), np.array(riv), np.array(scene), regs
    )


@dataclass
class MethodMaps:
    """Reduced maps (R, H, W) per method, CLRP parts and the time each method took."""

    maps: dict[str, np.ndarray] = field(default_factory=dict)
    parts: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


def explain_rows(
    model: Any,
    scorer: Scorer,
    rows: Rows,
    methods: dict[str, MethodSpec],
    batch_size: int = 8,
    reference: np.ndarray | None = None,
    analyzers: dict[tuple[str, str], Any] | None = None,
    progress: bool = False,
) -> MethodMaps:
    """Explain every row with every method.

    Engine analyzers (``use_tf_function=True``) are created once per key and reused across
    rows; model-agnostic ones run per scene with the scorer's memo so that all classes of a
    scene share the perturbed forward passes.

    Args:
        model: the Keras model.
        scorer: compiled forward of ``model`` (model-agnostic methods call it).
        rows: the rows to explain.
        methods: name -> MethodSpec.
        batch_size: rows per engine call.
        reference: reference images for prediction difference ("marginal" sampling).
        analyzers: cache of created analyzers (shared between calls), filled in place.
        progress: show a tqdm bar.

    Returns:
        :class:`MethodMaps`.
    """
    analyzers = {} if analyzers is None else analyzers
    out = MethodMaps()
    n = len(rows.classes)
    chunks = [slice(i, min(i + batch_size, n)) for i in range(0, n, batch_size)]
    scenes = sorted(set(rows.scene.tolist()))
    total = sum(len(scenes) if s.model_agnostic else len(chunks) for s in methods.values())
    bar = progress_bar(total, "explain", progress)
    for name, spec in methods.items():
        bar.set_description(name)
        start = time.perf_counter()
        key = spec.key()
        if key not in analyzers:
            options = dict(spec.options)
            if spec.model_agnostic:
                if spec.analyzer == "prediction_difference" and reference is not None:
                    options["reference"] = reference
                analyzers[key] = tf_clrp.create_analyzer(spec.analyzer, scorer, **options)
            else:
                analyzers[key] = tf_clrp.create_analyzer(
                    spec.analyzer, model, use_tf_function=True, **options
                )
        analyzer = analyzers[key]
        reduced = np.empty(rows.x.shape[:3], np.float32)
        if spec.model_agnostic:
            scorer.memo = {}
            for s in scenes:
                idx = np.flatnonzero(rows.scene == s)
                scorer.memo.clear()
                for i in idx:
                    m = analyzer.analyze(rows.x[i : i + 1], neuron_selection=int(rows.classes[i]))
                    reduced[i] = reduce_map(m, spec.reduce)[0]
                bar.update(1)
            scorer.memo = None
        else:
            parts: dict[str, list[np.ndarray]] = {"target": [], "dual": []}
            for ch in chunks:
                kwargs: dict[str, Any] = {}
                if spec.contrast is not None:
                    kwargs["contrast"] = (
                        rows.rivals[ch].astype(np.int64)
                        if spec.contrast == "rival"
                        else spec.contrast
                    )
                if spec.parts:
                    res = analyzer.analyze(
                        rows.x[ch], neuron_selection=rows.classes[ch], return_parts=True, **kwargs
                    )
                    parts["target"].append(reduce_map(res.target, "sum"))
                    parts["dual"].append(reduce_map(res.dual, "sum"))
                    m = res.contrastive
                else:
                    m = analyzer.analyze(rows.x[ch], neuron_selection=rows.classes[ch], **kwargs)
                reduced[ch] = reduce_map(m, spec.reduce)
                bar.update(1)
            if spec.parts:
                out.parts[name] = {k: np.concatenate(v) for k, v in parts.items()}
        out.maps[name] = reduced
        out.seconds[name] = time.perf_counter() - start
    bar.close()
    return out


# ----------------------------------------------------------------------------- metrics
#: Bootstrap resamples and seed of every 95 % interval.


def markdown_table(header: Sequence[str], body: Sequence[Sequence[str]]) -> str:
    """A GitHub markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in body]
    return "\n".join(lines)


def write_json(path: str | os.PathLike[str], doc: dict[str, Any]) -> None:
    """Write a result document as indented JSON and a final newline, creating the folder
    (numpy scalars and arrays as numbers / lists; NaN as NaN)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as fh:
        fh.write(json.dumps(doc, indent=1, default=_json_default) + "\n")


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(type(obj).__name__)


def write_csv(path: str, header: Sequence[str], body: Iterable[Sequence[Any]]) -> None:
    """Write a CSV file (no pandas)."""
    import csv

    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        for r in body:
            w.writerow([f"{v:.6g}" if isinstance(v, float) else v for v in r])


def example_figure(
    images: Sequence[np.ndarray],
    maps: dict[str, np.ndarray],
    row_idx: Sequence[int],
    rows: Rows,
    labels: Sequence[str],
    path: str,
    tolerance: float = 15.0,
    cell: float = 1.25,
) -> None:
    """Rows = explained (scene, class) rows, columns = the scene (``images``, one per row:
    uint8 RGB or a 2-D grey image) then one map per method.

    Each map is drawn with its own colour scale (signed: blue-white-red around 0; saliency
    magnitudes: white-red), the explained class's box in green and the map's arg-max as a
    black cross (circle: hit radius).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Circle, Rectangle

    names = list(maps)
    n_r, n_c = len(row_idx), len(names) + 1
    fig, axes = plt.subplots(n_r, n_c, figsize=(cell * n_c, cell * n_r + 0.4), squeeze=False)
    h, w = images[0].shape[:2]
    tol = tolerance * max(h, w) / 224.0
    for r, i in enumerate(row_idx):
        ax = axes[r, 0]
        ax.imshow(images[r], cmap=None if images[r].ndim == 3 else "gray")
        ax.set_ylabel(labels[r], fontsize=7)
        for c, name in enumerate(names, start=1):
            ax = axes[r, c]
            m = maps[name][i]
            vmax = float(np.abs(m).max()) or 1.0
            if m.min() >= 0:
                ax.imshow(m, cmap="Reds", vmin=0, vmax=vmax)
            else:
                ax.imshow(m, cmap="bwr", vmin=-vmax, vmax=vmax)
            for y0, x0, y1, x1 in rows.regions[i]:
                ax.add_patch(
                    Rectangle(
                        (x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, ec="limegreen", lw=1.0
                    )
                )
            py, px = np.unravel_index(int(np.argmax(m)), m.shape)
            ax.plot(px, py, "x", color="black", ms=5, mew=1.2)
            ax.add_patch(Circle((px, py), tol, fill=False, ec="black", lw=0.6))
            if r == 0:
                ax.set_title(name, fontsize=7)
        for ax in axes[r]:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.tight_layout(pad=0.2)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def curves_figure(
    panels: Sequence[tuple[str, dict[str, dict[str, list[float]]], str]],
    path: str,
    ylabel: str = "f(x_k) − f(x_0)  (target logit)",
) -> None:
    """Mean perturbation curves, one panel per (title, curves, order)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 4.2), squeeze=False)
    cmap = plt.get_cmap("tab20")
    for ax, (title, curves, order) in zip(axes[0], panels):
        for k, (name, by_order) in enumerate(curves.items()):
            if order in by_order:
                style = "-" if name.startswith("clrp") or name == "sglrp" else "--"
                ax.plot(by_order[order], style, color=cmap(k % 20), label=name, lw=1.4)
            elif name == "(random order)":
                ax.plot(by_order["random"], ":", color="black", label=name, lw=1.6)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("patches removed")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    axes[0, -1].legend(fontsize=6, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
