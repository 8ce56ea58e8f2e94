"""Follow-up analyses of the paper-claims benchmarks, from their saved outputs (cheap: no maps
are recomputed; the models run one forward pass on the explained rows).

1. Sign of the explained logit. ``lrp.*`` (and DeConvNet / Guided Backprop) seed the logit's
   *value*; CLRP seeds |z_j|. For a class whose logit on the scene is negative, a value-seeded
   LRP map is the negative of the |z|-seeded one (LRP is linear in the seed), so its arg-max
   is the *least* relevant pixel. Reports each method's Pointing Game hit rate split by the
   sign of the explained logit.
2. Where z+ relevance sits: the share of CLRP's target and dual maps in the outer 8 px.

Usage (after ``paper_pointing_game.py`` and ``paper_mnist.py``; writes
benchmarks/results/paper_investigate.md):
    python benchmarks/paper_investigate.py
"""

from __future__ import annotations

import csv
import os
import sys
from collections import defaultdict

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import paper_common as pc  # noqa: E402

ROOT = pc.ROOT
RESULTS = os.path.join(ROOT, "benchmarks", "results")
CACHE = os.path.join(ROOT, "benchmarks", "_cache")
VALUE_SEEDED = ("lrp.z_plus", "lrp.epsilon_plus", "lrp.sequential_preset_a")


def _hits_by_sign(
    csv_path: str, scene_key: str, signs: dict[tuple[str, int], float], methods: list[str]
) -> dict[str, dict[str, list[float]]]:
    """method -> {"z>0": hits, "z<0": hits} from a rows CSV."""
    out: dict[str, dict[str, list[float]]] = defaultdict(lambda: {"z>0": [], "z<0": []})
    with open(csv_path) as fh:
        for r in csv.DictReader(fh):
            if r["method"] not in methods:
                continue
            key = (r[scene_key], int(r["class"]))
            if key not in signs:
                continue
            out[r["method"]]["z>0" if signs[key] > 0 else "z<0"].append(float(r["hit"]))
    return out


def photos(maps_file: str, rows_csv: str) -> list[str]:
    """Sign analysis and border shares for the EfficientNet-Lite0 scenes."""
    from tf_clrp.zoo import efficientnet_lite0

    lines = ["## EfficientNet-Lite0 scenes (mosaics, pairs, VOC)"]
    data = np.load(maps_file)
    with open(rows_csv) as fh:
        meta = [r for r in csv.DictReader(fh) if r["method"] == "gradient"]
    scene_rows = [i for i, r in enumerate(meta) if r["kind"] != "photo"]
    x = data["x"].astype(np.float32)[scene_rows]
    classes = data["classes"][scene_rows]
    z = pc.Scorer(efficientnet_lite0())(x)[np.arange(len(x)), classes]
    signs = {(meta[i]["scene"], int(meta[i]["class"])): float(v) for i, v in zip(scene_rows, z)}
    negative = sorted({meta[i]["class_name"] for i, v in zip(scene_rows, z) if v < 0})
    lines.append(
        f"explained (scene, class) rows: {len(z)}; logit < 0: {(z < 0).sum()} (classes: {negative})"
    )
    methods = [
        "gradient",
        "guided_backprop",
        "deconvnet",
        *VALUE_SEEDED,
        "clrp (others)",
        "clrp (negated)",
        "clrp (rival)",
        "sglrp",
        "occlusion",
        "rise",
    ]
    lines += _sign_table(_hits_by_sign(rows_csv, "scene", signs, methods), methods)
    t = data["part/clrp (others)/target"].astype(np.float64)[scene_rows]
    d = data["part/clrp (others)/dual"].astype(np.float64)[scene_rows]
    tn, dn = t / t.sum((1, 2), keepdims=True), d / d.sum((1, 2), keepdims=True)
    lines.append(
        "\nShare of CLRP's target / dual relevance in the outer 8 px (a band of 8 px "
        "is 3.6 % of the image side):"
    )
    for name, sl in (
        ("top rows", np.s_[:, :8, :]),
        ("bottom rows", np.s_[:, -8:, :]),
        ("left cols", np.s_[:, :, :8]),
        ("right cols", np.s_[:, :, -8:]),
    ):
        lines.append(
            f"- {name}: target {tn[sl].sum((1, 2)).mean():.3f}, "
            f"dual {dn[sl].sum((1, 2)).mean():.3f}"
        )
    return lines


def mnist() -> list[str]:
    """Sign analysis for the MNIST scenes (rebuilt from the same seed, cached model)."""
    import glob

    import keras
    import paper_mnist as pm

    lines = ["## MNIST two-digit scenes"]
    cfg = pm.Config()
    images, labels = pm.load_digits(cfg.digits)
    order = np.random.default_rng(cfg.seed).permutation(len(images))
    images, labels = images[order], labels[order]
    rng = np.random.default_rng(cfg.seed + 2)
    x, _, regions = pm.make_scenes(
        images[cfg.train_digits :], labels[cfg.train_digits :], cfg.scenes, rng
    )
    path = sorted(glob.glob(os.path.join(CACHE, "mnist_cnn_*.keras")))[-1]
    logits = pc.Scorer(keras.models.load_model(path, compile=False))(x)
    signs = {(str(s), c): float(logits[s, c]) for s, reg in enumerate(regions) for c in reg}
    neg = sum(v < 0 for v in signs.values())
    lines.append(f"explained rows: {len(signs)}; logit < 0: {neg}")
    methods = [
        "gradient",
        "guided_backprop",
        "deconvnet",
        *VALUE_SEEDED,
        "clrp (others)",
        "clrp (rival)",
        "sglrp",
        "occlusion",
        "rise",
    ]
    split = _hits_by_sign(os.path.join(RESULTS, "paper_mnist_rows.csv"), "scene", signs, methods)
    return lines + _sign_table(split, methods)


def _sign_table(split: dict[str, dict[str, list[float]]], methods: list[str]) -> list[str]:
    """Markdown rows: hit rate (and count) per sign of the explained logit; methods absent
    from the rows CSV are left out."""
    lines = ["| method | hit rate, logit > 0 | hit rate, logit < 0 |\n|---|---|---|"]
    for m in methods:
        pos, neg = split[m]["z>0"], split[m]["z<0"]
        if not pos and not neg:
            continue
        lines.append(
            f"| {m} | {pc.fmt(np.mean(pos) if pos else np.nan, 2)} ({len(pos)}) | "
            f"{pc.fmt(np.mean(neg) if neg else np.nan, 2)} ({len(neg)}) |"
        )
    return lines


def main(argv: list[str] | None = None) -> None:
    """Print both analyses as markdown and write them to benchmarks/results."""
    import argparse
    import time

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--maps",
        default=os.path.join(CACHE, "paper_pointing_game_maps.npz"),
        help="saved maps of a paper_pointing_game.py run with clrp (others)",
    )
    p.add_argument(
        "--rows",
        default=os.path.join(RESULTS, "paper_pointing_game_rows.csv"),
        help="rows CSV of the same scenes (a merged one: every method)",
    )
    args = p.parse_args(argv)
    start = time.perf_counter()
    body = photos(args.maps, args.rows) + [""] + mnist()
    head = [
        f"Command: `{pc.command_line(__file__, argv)}` "
        f"({time.perf_counter() - start:.0f} s on 2 shared CPU cores), from the saved maps "
        "and rows of `paper_pointing_game.py` (--maps, --rows) and of `paper_mnist.py` "
        "(its cached model and rows CSV).",
        "",
    ]
    text = "\n".join(head + body) + "\n"
    with open(os.path.join(RESULTS, "paper_investigate.md"), "w") as fh:
        fh.write(text)
    print(text)


if __name__ == "__main__":
    main()
