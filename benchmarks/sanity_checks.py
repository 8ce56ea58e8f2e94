"""Sanity checks (Adebayo et al. 2018): cascading model-parameter randomisation on
EfficientNet-Lite0 with the bundled photos.

For each method the maps of the original model's predicted classes are compared, per photo,
with the maps after re-initialising the layers from the top down (stage by stage: the
classifier, the head convolution, blocks 7 … 1, the stem), by Spearman rank correlation of
the absolute channel-summed maps and by SSIM (``tf_clrp.metrics.model_randomization``).
Writes benchmarks/results/sanity_checks.json and docs/figures/sanity_checks.png.

    python benchmarks/sanity_checks.py [--photos N] [--mode cascading|independent]
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from tf_clrp import zoo
from tf_clrp.metrics import model_randomization
from tf_clrp.metrics.randomization import weighted_layers

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import paper_common as pc  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

#: label -> (create_analyzer name, options)
METHODS: dict[str, tuple[str, dict[str, Any]]] = {
    "gradient": ("gradient", {}),
    "guided_backprop": ("guided_backprop", {}),
    "grad_cam": ("grad_cam", {}),
    "lrp.epsilon_plus": ("lrp.epsilon_plus", {}),
    "clrp (others)": ("clrp", {"input_layer_rule": tuple(zoo.PREPROCESSING_BOUNDS)}),
}


def stage_of(name: str) -> str:
    """EfficientNet stage of a layer: "block3" for block3b_dwconv, else the first word."""
    match = re.match(r"(block\d+)", name)
    return match.group(1) if match else name.split("_")[0]


def stage_steps(model: Any) -> list[list[str]]:
    """Top-down randomisation steps, one per stage (consecutive layers of one stage)."""
    steps: list[list[str]] = []
    for name in weighted_layers(model):
        if steps and stage_of(steps[-1][0]) == stage_of(name):
            steps[-1].append(name)
        else:
            steps.append([name])
    return steps


def bootstrap_interval(values: np.ndarray, seed: int = 0, n: int = 2000) -> tuple[float, float]:
    """95 % percentile bootstrap interval of the mean (NaNs dropped)."""
    values = values[np.isfinite(values)]
    if len(values) < 2:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = rng.choice(values, size=(n, len(values))).mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(low), float(high)


def summarize(result: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for metric in ("spearman", "ssim"):
        values = getattr(result, metric)
        out[metric] = [float(np.nanmean(row)) for row in values]
        out[f"{metric}_ci95"] = [bootstrap_interval(row) for row in values]
    # a constant (e.g. all-zero) randomised map has no ranks: its Spearman is NaN and left
    # out of the mean; its SSIM is that of a zero map
    out["constant_maps"] = [int(np.isnan(row).sum()) for row in result.spearman]
    return out


def plot(results: dict[str, Any], labels: list[str], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2), sharex=True)
    steps = np.arange(len(labels) + 1)
    for ax, metric, name in zip(axes, ("spearman", "ssim"), ("Spearman (|map|)", "SSIM")):
        for method, summary in results.items():
            mean = [1.0, *summary[metric]]
            ci = np.array([(1.0, 1.0), *summary[f"{metric}_ci95"]])
            (line,) = ax.plot(steps, mean, marker="o", ms=3, label=method)
            ax.fill_between(steps, ci[:, 0], ci[:, 1], color=line.get_color(), alpha=0.15)
        ax.set_xticks(steps, ["original", *labels], rotation=60, ha="right", fontsize=8)
        ax.set_ylabel(name)
        ax.set_ylim(-0.3, 1.05)
        ax.axhline(0, color="grey", lw=0.5)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=None, help="use the first N photos")
    parser.add_argument("--mode", choices=("cascading", "independent"), default="cascading")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--max-steps", type=int, default=None)
    parser.add_argument(
        "--out", default=str(ROOT / "benchmarks" / "results" / "sanity_checks.json")
    )
    parser.add_argument("--figure", default=str(ROOT / "docs" / "figures" / "sanity_checks.png"))
    args = parser.parse_args(argv)

    names = zoo.list_photos(available_only=True)[: args.photos]
    images = zoo.preprocess_input(np.stack([zoo.load_photo(n) for n in names]))
    model = zoo.efficientnet_lite0()
    steps = stage_steps(model)[: args.max_steps]
    labels = [stage_of(group[0]) for group in steps]
    results: dict[str, Any] = {}
    timings: dict[str, float] = {}
    for label in args.methods.split(","):
        analyzer, options = METHODS[label]
        start = time.perf_counter()
        result = model_randomization(
            model, images, analyzer, mode=args.mode, layers=steps, explain_kwargs=options
        )
        timings[label] = time.perf_counter() - start
        results[label] = summarize(result)
        print(
            f"{label}: spearman {np.round(results[label]['spearman'], 3).tolist()} "
            f"ssim {np.round(results[label]['ssim'], 3).tolist()} "
            f"({timings[label]:.0f} s)",
            flush=True,
        )
    report = {
        "command": pc.command_line(__file__, argv),
        "model": "tf_clrp.zoo.efficientnet_lite0() (ImageNet weights)",
        "photos": names,
        "targets": "each photo's predicted class on the original model",
        "mode": args.mode,
        "steps": steps,
        "step_labels": labels,
        "comparison": "per photo, channel-summed maps; Spearman of |map|, SSIM of min-max "
        "normalised |map| (tf_clrp.metrics.model_randomization, absolute=True)",
        "interval": "95% percentile bootstrap over photos (2000 resamples) of the mean",
        "seconds": timings,
        "results": results,
    }
    pc.write_json(args.out, report)
    plot(
        results,
        labels,
        Path(args.figure),
        f"{args.mode} randomisation, EfficientNet-Lite0, n = {len(names)} photos "
        "(shaded: 95 % bootstrap CI)",
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
