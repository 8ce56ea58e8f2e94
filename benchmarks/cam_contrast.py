"""Does contrast make Grad-CAM class-discriminative? Measured on photo pairs.

Each ordered pair of the photos is tiled side by side (1 × 2, 224 × 224, tiles 112 px) and
each tile's class (EfficientNet-Lite0's prediction on that photo alone) is explained on the
pair. Per map: the share of its positive mass inside the tile of the explained class, and
whether its maximum lies in that tile (Pointing Game, τ = 0). Methods: Grad-CAM,
contrastive Grad-CAM ("others"; the other tile's class as rival) and, for reference, CLRP.
Writes benchmarks/results/cam_contrast.json.

    python benchmarks/cam_contrast.py
"""

from __future__ import annotations

import itertools
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

import tf_clrp
from tf_clrp import zoo
from tf_clrp.metrics import relevance_mass_in_region

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import paper_common as pc  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PHOTOS = ("chelsea", "coffee", "motorcycle", "camera", "grace_hopper", "china")


def interval(values: np.ndarray, seed: int = 0) -> tuple[float, float]:
    """95 % percentile bootstrap interval of the mean."""
    rng = np.random.default_rng(seed)
    means = rng.choice(values, size=(2000, len(values))).mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(low), float(high)


def main() -> int:
    model = zoo.efficientnet_lite0()
    singles = zoo.preprocess_input(np.stack([zoo.load_photo(p) for p in PHOTOS]))
    classes = np.asarray(model(singles)).argmax(axis=1)
    images, targets, rivals, boxes = [], [], [], []
    for a, b in itertools.permutations(range(len(PHOTOS)), 2):
        mosaic, tiles = zoo.make_mosaic(
            [zoo.load_photo(PHOTOS[a]), zoo.load_photo(PHOTOS[b])], grid=(1, 2), tile=112
        )
        canvas = np.zeros((224, 224, 3), np.uint8)
        canvas[56:168] = mosaic
        for own, other, tile in ((a, b, tiles[0]), (b, a, tiles[1])):
            images.append(canvas)
            targets.append(int(classes[own]))
            rivals.append(int(classes[other]))
            boxes.append((tile[0] + 56, tile[1], tile[2] + 56, tile[3]))
    x = zoo.preprocess_input(np.stack(images))
    targets_arr, rivals_arr = np.array(targets), np.array(rivals)
    grad_cam = tf_clrp.create_analyzer("grad_cam", model)
    clrp = tf_clrp.create_analyzer("clrp", model, input_layer_rule=tuple(zoo.PREPROCESSING_BOUNDS))
    maps: dict[str, np.ndarray] = {
        "grad_cam": grad_cam.analyze(x, targets_arr, batch_size=8),
        "grad_cam (contrast='others')": grad_cam.analyze(
            x, targets_arr, batch_size=8, contrast="others"
        ),
        "grad_cam (contrast=rival tile)": grad_cam.analyze(
            x, targets_arr, batch_size=8, contrast=rivals_arr
        ),
        "clrp (others)": clrp.analyze(x, targets_arr, batch_size=8),
    }
    masks = np.zeros((len(x), 224, 224), bool)
    for i, (y0, x0, y1, x1) in enumerate(boxes):
        masks[i, y0:y1, x0:x1] = True
    results: dict[str, Any] = {}
    for label, m in maps.items():
        reduced = m.sum(axis=-1)
        mass = relevance_mass_in_region(reduced, masks)
        flat = reduced.reshape(len(x), -1).argmax(axis=1)
        hits = masks.reshape(len(x), -1)[np.arange(len(x)), flat].astype(float)
        empty = ~np.isfinite(mass)
        mass = np.where(empty, 0.0, mass)
        results[label] = {
            "mass_in_target_tile": float(mass.mean()),
            "mass_ci95": interval(mass),
            "pointing_hit_rate": float(hits.mean()),
            "hit_ci95": interval(hits),
            "empty_maps": int(empty.sum()),
        }
        print(label, {k: np.round(v, 3).tolist() for k, v in results[label].items()}, flush=True)
    report = {
        "command": pc.command_line(__file__, None),
        "model": "tf_clrp.zoo.efficientnet_lite0() (ImageNet weights)",
        "photos": PHOTOS,
        "n_maps": len(x),
        "setup": "ordered photo pairs side by side (tiles 112 px on a 224 px black "
        "canvas); each tile's class explained; a map with no positive mass "
        "counts as 0 mass",
        "interval": "95% percentile bootstrap over maps (2000 resamples)",
        "results": results,
    }
    pc.write_json(ROOT / "benchmarks" / "results" / "cam_contrast.json", report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
