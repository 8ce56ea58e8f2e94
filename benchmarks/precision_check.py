"""How close ``precision="bfloat16"`` / ``"mixed"`` maps are to float32 ones.

Usage:
    python benchmarks/precision_check.py --model vgg16 --batch 4
    python benchmarks/precision_check.py --model efficientnet_lite0 --photos

Prints, per analyzer (``NAME@PRECISION``), the smallest per-sample Pearson correlation and
the largest absolute difference relative to the largest float32 value. Inputs are uniform
noise, or with ``--photos`` the bundled photos (chelsea, coffee, rocket, astronaut) in the
model's preprocessing; ``efficientnet_lite0`` is the real pretrained network from the zoo.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import tf_clrp  # noqa: E402

PHOTOS = ("chelsea", "coffee", "rocket", "astronaut")


def _model_and_input(name: str, batch: int, photos: bool) -> tuple[Any, np.ndarray]:
    if name == "efficientnet_lite0":
        from tf_clrp.zoo import efficientnet_lite0
        from tf_clrp.zoo.efficientnet_lite0 import preprocess_input

        model, prep = efficientnet_lite0(), preprocess_input
    else:
        build = {"vgg16": keras.applications.VGG16, "resnet50": keras.applications.ResNet50}
        model = build[name](weights=None, classifier_activation=None)
        prep = keras.applications.imagenet_utils.preprocess_input  # caffe, as both use
    if photos:
        from tf_clrp.zoo import load_photo

        images = np.stack([load_photo(p) for p in PHOTOS[:batch]]).astype("float32")
        return model, np.asarray(prep(images), dtype="float32")
    x = np.random.default_rng(0).uniform(-1, 1, (batch, 224, 224, 3)).astype("float32")
    return model, x


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model", default="vgg16", choices=("vgg16", "resnet50", "efficientnet_lite0")
    )
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--photos", action="store_true", help="bundled photos, not noise")
    parser.add_argument(
        "--methods",
        default="lrp.z_plus@bfloat16,lrp.z_plus@mixed,"
        "lrp.epsilon_plus@bfloat16,lrp.sequential_preset_a@bfloat16,"
        "clrp@mixed,clrp@bfloat16,sglrp@mixed,sglrp@bfloat16",
    )
    args = parser.parse_args()
    model, x = _model_and_input(args.model, args.batch, args.photos)
    print(f"model={args.model} batch={len(x)} input={'photos' if args.photos else 'noise'}")
    target = 1 if not args.photos else None  # photos: each one's top class
    for method in args.methods.split(","):
        name, _, precision = method.partition("@")
        exact = tf_clrp.create_analyzer(name, model).analyze(x, neuron_selection=target)
        fast = tf_clrp.create_analyzer(name, model, precision=precision).analyze(
            x, neuron_selection=target
        )
        corr = min(np.corrcoef(a.ravel(), b.ravel())[0, 1] for a, b in zip(exact, fast))
        rel = np.abs(exact - fast).max() / np.abs(exact).max()
        print(
            f"{method:32s} min Pearson r {corr:.7f}   max |diff| / max|float32| {rel:.2e}",
            flush=True,
        )


if __name__ == "__main__":
    main()
