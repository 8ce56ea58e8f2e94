"""Sanity checks (Adebayo et al. 2018) on the ViT of ``vit_mnist.py``: cascading
model-parameter randomisation, block by block from the head down.

Explains the predicted class of two-digit MNIST test scenes with each method on the trained
ViT, then after re-initialising the head, the final LayerNorm, the encoder blocks (last
first) and the patch embedding (``tf_clrp.metrics.model_randomization``; the user model is
never modified). Spearman rank correlation of the absolute maps and SSIM against the
original map, mean and 95 % bootstrap interval over scenes. Writes
benchmarks/results/sanity_vit.json and docs/figures/sanity_vit.png.

    python benchmarks/sanity_vit.py [--scenes N]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import paper_mnist as pm
import sanity_checks as sc
import vit_mnist as vm

from tf_clrp.metrics import model_randomization
from tf_clrp.metrics.randomization import weighted_layers

ROOT = Path(__file__).resolve().parents[1]

#: label -> (create_analyzer name, options)
METHODS: dict[str, tuple[str, dict[str, Any]]] = {
    "gradient": ("gradient", {}),
    "attention_rollout": ("attention_rollout", {}),
    "grad_cam (patch grid)": ("grad_cam", {"layer_name": "patchify"}),
    "attnlrp": ("attnlrp", {}),
    "clrp (others)": ("clrp", {}),
}


def block_steps(model: Any) -> list[list[str]]:
    """Top-down steps: consecutive weighted layers of one block (``block2_...``) together."""
    steps: list[list[str]] = []
    for name in weighted_layers(model):
        stage = name.split("_")[0]
        if steps and steps[-1][0].split("_")[0] == stage:
            steps[-1].append(name)
        else:
            steps.append([name])
    return steps


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=32)
    parser.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "sanity_vit.json"))
    parser.add_argument("--figure", default=str(ROOT / "docs" / "figures" / "sanity_vit.png"))
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    cfg = vm.Config()
    images, labels = pm.load_digits(cfg.digits)
    order = np.random.default_rng(cfg.seed).permutation(len(images))
    images, labels = images[order], labels[order]
    model, _ = vm.trained_model(
        cfg,
        images[: cfg.train_digits],
        labels[: cfg.train_digits],
        os.path.join(ROOT, "benchmarks", "_cache"),
    )
    rng = np.random.default_rng(cfg.seed + 3)
    test = slice(cfg.train_digits, len(images))
    x, _, _ = pm.make_scenes(images[test], labels[test], args.scenes, rng)
    steps = block_steps(model)
    labels_ = ["/".join(sorted({s.split("_")[0] for s in step})) for step in steps]
    results = {}
    for label, (name, options) in METHODS.items():
        result = model_randomization(model, x, name, layers=steps, explain_kwargs=options)
        results[label] = sc.summarize(result)
        print(label, "spearman", np.round(results[label]["spearman"], 3).tolist())
    doc = {
        "command": "python benchmarks/sanity_vit.py --scenes " + str(args.scenes),
        "scenes": args.scenes,
        "steps": labels_,
        "seconds": round(time.perf_counter() - t0, 1),
        "methods": results,
    }
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(doc, indent=1) + "\n")
    sc.plot(results, labels_, Path(args.figure), f"ViT (MNIST scenes), n = {args.scenes}")
    print(f"wrote {args.json} and {args.figure} in {doc['seconds']} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
