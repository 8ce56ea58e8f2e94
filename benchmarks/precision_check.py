"""How close ``precision="bfloat16"`` maps are to float32 ones on a real-size network.

Usage:
    python benchmarks/precision_check.py --model vgg16 --batch 4

Prints, per analyzer, the smallest per-sample Pearson correlation and the largest absolute
difference relative to the largest float32 value.
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import tf_clrp  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="vgg16", choices=("vgg16", "resnet50"))
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--methods",
                        default="lrp.z_plus,lrp.epsilon_plus,lrp.sequential_preset_a")
    args = parser.parse_args()
    build = {"vgg16": keras.applications.VGG16, "resnet50": keras.applications.ResNet50}
    model = build[args.model](weights=None, classifier_activation=None)
    x = np.random.default_rng(0).uniform(-1, 1, (args.batch, 224, 224, 3)).astype("float32")
    print(f"model={args.model} batch={args.batch}")
    for method in args.methods.split(","):
        exact = tf_clrp.create_analyzer(method, model).analyze(x, neuron_selection=1)
        fast = tf_clrp.create_analyzer(method, model, precision="bfloat16").analyze(
            x, neuron_selection=1)
        corr = min(np.corrcoef(a.ravel(), b.ravel())[0, 1] for a, b in zip(exact, fast))
        rel = np.abs(exact - fast).max() / np.abs(exact).max()
        print(f"{method:20s} min Pearson r {corr:.7f}   max |diff| / max|float32| {rel:.2e}")


if __name__ == "__main__":
    main()
