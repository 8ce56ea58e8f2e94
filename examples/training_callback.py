"""Watch explanations evolve during training with ``HeatmapCallback`` (offline, ~1 min on CPU).

A small CNN learns to tell squares, discs and triangles apart on synthetic 32x32 images
(drawn with OpenCV at random positions, with noise). After every epoch the callback explains
four fixed validation images with the gradient, LRP (epsilon+) and CLRP, and writes a grid
``heatmaps_epochNNNN.png`` into ``--log-dir`` (plus TensorBoard images if tensorboard is
installed: ``tensorboard --logdir tf_clrp_callback_logs``). Early grids are noisy; once the
model has learnt the task, the LRP/CLRP relevance sits on the shape's outline.

Usage:
    python examples/training_callback.py [--epochs 6] [--log-dir tf_clrp_callback_logs] [--fast]

``--fast`` (used by the tests) trains one epoch on 256 images.
"""

from __future__ import annotations

import argparse
import os

import cv2
import keras
import numpy as np

from tf_clrp.callbacks import HeatmapCallback

CLASSES = ("square", "disc", "triangle")


def make_shapes(n: int, size: int = 32, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Synthetic images (n, size, size, 1) in [0, 1] and labels 0..2."""
    rng = np.random.default_rng(seed)
    images = np.zeros((n, size, size), np.float32)
    labels = rng.integers(0, len(CLASSES), n)
    for image, label in zip(images, labels):
        r = int(rng.integers(5, 9))
        cy, cx = (int(v) for v in rng.integers(r + 1, size - r - 1, 2))
        if label == 0:
            cv2.rectangle(image, (cx - r, cy - r), (cx + r, cy + r), 1.0, -1)
        elif label == 1:
            cv2.circle(image, (cx, cy), r, 1.0, -1)
        else:
            pts = np.array([[cx, cy - r], [cx - r, cy + r], [cx + r, cy + r]], np.int32)
            cv2.fillPoly(image, [pts], 1.0)
    images += rng.normal(0, 0.15, images.shape).astype(np.float32)
    return np.clip(images, 0, 1)[..., None], labels


def build_model() -> keras.Model:
    """A small CNN with a softmax output (the analyzers explain the pre-softmax logits)."""
    model = keras.Sequential(
        [
            keras.Input((32, 32, 1)),
            keras.layers.Conv2D(16, 3, padding="same", activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(len(CLASSES), activation="softmax"),
        ]
    )
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def main() -> None:
    """Trains the model with the callback and prints where the heatmaps are."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--log-dir", default="tf_clrp_callback_logs")
    parser.add_argument("--fast", action="store_true", help="one epoch on 256 images (for tests)")
    args = parser.parse_args()
    epochs = 1 if args.fast else args.epochs

    keras.utils.set_random_seed(0)  # the training's own seed; the callback draws no RNG
    x_train, y_train = make_shapes(256 if args.fast else 1200, seed=0)
    x_val, y_val = make_shapes(200, seed=1)
    model = build_model()
    callback = HeatmapCallback(
        x_val[:4],  # fixed samples, in the model's input space
        classes=None,  # explain the model's current prediction
        labels=y_val[:4],  # and show the true class next to it
        methods=["gradient", "lrp.epsilon_plus", "clrp"],
        log_dir=args.log_dir,
        every_n_epochs=1,
        tensorboard="auto",
        class_names=CLASSES,
        use_tf_function=not args.fast,  # one event: eager beats tracing a graph
        verbose=1,
    )
    model.fit(
        x_train,
        y_train,
        epochs=epochs,
        batch_size=32,
        validation_data=(x_val, y_val),
        callbacks=[callback],
        verbose=2,
    )
    for epoch, _batch, seconds in callback.timings:
        print(f"epoch {epoch}: explained and saved in {seconds:.2f} s")
    print(f"heatmaps written to {os.path.abspath(args.log_dir)}")


if __name__ == "__main__":
    main()
