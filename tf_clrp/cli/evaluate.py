"""``tf-clrp evaluate``: scores methods with the metrics of ``tf_clrp.cli.metric_table``.

Inputs, in this order of checks: the options and metric choice (usage errors before anything
is loaded), the box / label files, the model, the images; then per method its maps and every
chosen metric (``tf_clrp.cli.metric_runs``), reported as tables or JSON
(``tf_clrp.cli.metric_report``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tf_clrp._io import progress_items
from tf_clrp.cli import models
from tf_clrp.cli.common import (
    CliError,
    UsageError,
    _check_outputs,
    _parse_methods,
    _write_text,
    build_analyzer,
)
from tf_clrp.cli.images import collect_images, read_image
from tf_clrp.cli.metric_table import MetricSpec, resolve_options, selected_metrics
from tf_clrp.cli.preprocessing import PREPROCESSING

Box = tuple[int, int, int, int]


@dataclass
class _EvalSample:
    """One evaluated image, the classes to explain in it and their ground-truth boxes.

    ``regions`` maps each class to its boxes (an empty list when there are no boxes); an
    empty dict means "explain the model's top class".
    """

    image: np.ndarray
    regions: dict[int, list[Box]]
    name: str


def _builtin_mosaics(model: Any, n: int, seed: int) -> tuple[list[_EvalSample], list[str]]:
    """``n`` 2x2 mosaics of bundled photos of distinct top-1 classes; tile = ground truth."""
    from tf_clrp.zoo import make_mosaic, preprocess_input

    names, photos = models.photos(models.RECOGNISED_PHOTOS)
    x = np.asarray(preprocess_input(np.stack(photos)), np.float32) if photos else None
    if x is None:
        raise CliError("no bundled photos available: pip install scikit-image")
    top1 = models.model_outputs(model, x, len(x)).argmax(axis=1)
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
        samples.append(
            _EvalSample(mosaic, regions, f"mosaic{k}: " + "/".join(names[i] for i in pick))
        )
    return samples, [names[i] for i in chosen]


def _json_object(path: str, kind: str, example: str) -> dict[str, Any]:
    """The non-empty JSON object in a box or label file (CliError naming the problem)."""
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except FileNotFoundError:
        raise CliError(f"{kind} file not found: {path}") from None
    except json.JSONDecodeError as error:
        raise CliError(f"{path} is not valid JSON: {error}") from None
    if not isinstance(data, dict) or not data:
        raise CliError(f'{path} must be a non-empty JSON object {{"image.jpg": {example}, ...}}')
    return data


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
    data = _json_object(path, "box", '[{"class": 3, "box": [y0, x0, y1, x1]}, ...]')
    result: dict[str, list[tuple[int, tuple[int, int, int, int]]]] = {}
    for name, entries in data.items():
        if not isinstance(entries, list) or not entries:
            raise CliError(
                f"{path}: entry {name!r} must be a non-empty list of "
                '{"class": int, "box": [y0, x0, y1, x1]}'
            )
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
                raise CliError(
                    f"{path}: bad entry for {name!r}: {entry!r}; expected "
                    '{"class": int >= 0, "box": [y0, x0, y1, x1]} with '
                    "y0 < y1, x0 < x1"
                ) from None
            parsed.append((int(cls), (box[0], box[1], box[2], box[3])))
        result[str(name)] = parsed
    return result


def load_labels(path: str) -> dict[str, list[int]]:
    """Reads a label file: a JSON object mapping image file names (relative to ``--images``)
    to a class index or a list of class indices to explain.

    Raises:
        CliError: missing file, invalid JSON or entries (the message names the entry).
    """
    data = _json_object(path, "label", "3 or [3, 5]")
    result: dict[str, list[int]] = {}
    for name, entry in data.items():
        classes = entry if isinstance(entry, list) else [entry]
        if (
            not classes
            or any(isinstance(c, bool) or not isinstance(c, int) or c < 0 for c in classes)
            or len(set(classes)) != len(classes)
        ):
            raise CliError(
                f"{path}: bad entry for {name!r}: {entry!r}; expected a class "
                "index >= 0 or a list of distinct ones"
            )
        result[str(name)] = [int(c) for c in classes]
    return result


def _read_scaled(
    path: str, size: tuple[int, int], channels: int, max_megapixels: float
) -> tuple[np.ndarray, tuple[int, int]]:
    """The image at the model's input size and its original (height, width)."""
    raw = read_image(path, None, channels, max_megapixels)
    height, width = raw.shape[:2]
    image = raw if (height, width) == size else read_image(path, size, channels, max_megapixels)
    return image.reshape(*size, channels), (height, width)


def _user_samples(
    folder: str,
    boxes: dict[str, list[tuple[int, Box]]],
    boxes_path: str,
    size: tuple[int, int],
    channels: int,
    n: int | None,
    max_megapixels: float,
) -> list[_EvalSample]:
    """The images named in the box file with their boxes scaled to the input size."""
    samples = []
    for name, entries in list(boxes.items())[:n]:
        path = _image_in_folder(folder, name, boxes_path)
        image, (height, width) = _read_scaled(path, size, channels, max_megapixels)
        sy, sx = size[0] / height, size[1] / width
        regions: dict[int, list[Box]] = {}
        for cls, (y0, x0, y1, x1) in entries:
            if y1 > height or x1 > width:
                raise CliError(
                    f"{boxes_path}: box {[y0, x0, y1, x1]} of {name!r} lies "
                    f"outside the image ({height}x{width})"
                )
            scaled = (
                int(np.floor(y0 * sy)),
                int(np.floor(x0 * sx)),
                max(int(np.ceil(y1 * sy)), int(np.floor(y0 * sy)) + 1),
                max(int(np.ceil(x1 * sx)), int(np.floor(x0 * sx)) + 1),
            )
            regions.setdefault(cls, []).append(scaled)
        samples.append(_EvalSample(image, regions, name))
    return samples


def _labelled_samples(
    folder: str,
    labels: dict[str, list[int]] | None,
    labels_path: str,
    size: tuple[int, int],
    channels: int,
    n: int | None,
    max_megapixels: float,
) -> list[_EvalSample]:
    """The images named in the label file (or every image of the folder, top class)."""
    if labels is None:
        named = {os.path.relpath(p, folder): [] for p in collect_images([folder])}
    else:
        named = labels
    samples = []
    for name, classes in list(named.items())[:n]:
        path = (
            os.path.join(folder, name)
            if labels is None
            else _image_in_folder(folder, name, labels_path)
        )
        image, _ = _read_scaled(path, size, channels, max_megapixels)
        samples.append(_EvalSample(image, {c: [] for c in classes}, name))
    return samples


def _image_in_folder(folder: str, name: str, boxes_path: str) -> str:
    """The file a box-file key names; keys are relative paths that stay inside ``folder``.

    Raises:
        CliError: an absolute key, a key leaving the folder (``..``, a symbolic link out of
            it) or a key naming no file.
    """
    if os.path.isabs(name) or os.path.splitdrive(name)[0]:
        raise CliError(
            f"{boxes_path}: key {name!r} is an absolute path; keys are file names "
            f"relative to --images {folder}"
        )
    root = os.path.realpath(folder)
    path = os.path.realpath(os.path.join(root, name))
    if os.path.commonpath([root, path]) != root or ".." in name.replace("\\", "/").split("/"):
        raise CliError(
            f"{boxes_path}: key {name!r} leaves the --images folder {folder}; keys "
            "are file names inside it"
        )
    if not os.path.isfile(path):
        raise CliError(f"{boxes_path} names {name!r}, which is not in {folder}")
    return path


def _check_usage(
    args: argparse.Namespace,
) -> tuple[list[str], list[MetricSpec], dict[str, dict[str, Any]]]:
    """Methods, metrics and their options; every usage error before anything is loaded."""
    methods = _parse_methods(args.methods)
    try:
        chosen = selected_metrics(args.metric)
        options = resolve_options(args, chosen)
    except ValueError as error:
        raise UsageError(str(error)) from None
    for flag, value in (("--boxes", args.boxes), ("--labels", args.labels)):
        if value is not None and args.images is None:
            raise UsageError(f"{flag} needs --images (the folder its keys are relative to)")
    if args.boxes is not None and args.labels is not None:
        raise UsageError("--boxes and --labels exclude each other (boxes name the classes)")
    if args.images is not None:
        for spec in chosen:
            if "boxes" in spec.needs and args.boxes is None:
                raise UsageError(
                    f"--metric {spec.name} needs --boxes (ground-truth boxes "
                    "for the images in --images)"
                )
    if args.n is not None and args.n < 1:
        raise UsageError(f"--n must be >= 1, got {args.n}")
    if args.batch_size < 1:
        raise UsageError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.model is None and args.size is not None:
        raise UsageError("--size only applies with --model (EfficientNet-Lite0 takes 224x224)")
    if args.model is not None and args.images is None:
        raise UsageError("the built-in mosaics need the built-in model; with --model pass --images")
    if args.json not in (None, "-"):
        _check_outputs([args.json], args.force)
    return methods, chosen, options


def _check_two_classes(
    chosen: Sequence[MetricSpec], boxes: dict[str, Any] | None, boxes_path: str | None
) -> None:
    """Metrics comparing classes need an image with two or more boxed classes."""
    if boxes is None:
        return
    several = any(len({cls for cls, _ in entries}) >= 2 for entries in boxes.values())
    for spec in chosen:
        if "two_classes" in spec.needs and not several:
            raise UsageError(
                f"--metric {spec.name} needs images with two or more boxed "
                f"classes; no image in --boxes {boxes_path} has them"
            )


def _scorer(model: Any, output_index: int | None) -> Any:
    """The model, or a view of its explained output (a new Model on the same layers)."""
    if output_index is None or len(model.outputs) == 1:
        return model
    import keras

    return keras.Model(model.inputs, model.outputs[output_index])


def _context(
    args: argparse.Namespace, samples: list[_EvalSample], model: Any, prep: Any, n_out: int
):
    """Rows of (image, class) pairs, their outputs and an analyzer cache."""
    from tf_clrp.cli.metric_runs import EvalContext

    inputs = np.stack([prep.apply(s.image[None])[0] for s in samples]).astype(np.float32)
    outputs = models.model_outputs(model, inputs, args.batch_size, args.output_index)
    rows_x, rows_cls, rows_img, rows_gt = [], [], [], []
    for i, sample in enumerate(samples):
        regions = sample.regions or {int(outputs[i].argmax()): []}
        for cls, boxes in regions.items():
            if cls >= n_out:
                raise UsageError(f"{sample.name}: class {cls} >= the model's {n_out} outputs")
            rows_x.append(inputs[i])
            rows_cls.append(cls)
            rows_img.append(i)
            rows_gt.append(boxes)
    image_ids = np.asarray(rows_img)
    analyzers: dict[str, Any] = {}
    compile_fn = len(rows_x) > 4 * args.batch_size

    def create(method: str, net: Any) -> Any:
        try:
            return build_analyzer(
                method,
                net,
                (prep.low, prep.high),
                compile_fn,
                output_index=args.output_index if net is model else None,
            )
        except CliError:
            raise
        except Exception as error:  # noqa: BLE001 - report which method failed
            raise CliError(f"method {method!r} failed: {type(error).__name__}: {error}") from None

    def explain(method: str, x: np.ndarray, classes: np.ndarray) -> np.ndarray:
        if method not in analyzers:
            analyzers[method] = create(method, model)
        try:
            return analyzers[method].analyze(
                x, neuron_selection=classes, batch_size=args.batch_size
            )
        except Exception as error:  # noqa: BLE001 - report which method failed
            raise CliError(f"method {method!r} failed: {type(error).__name__}: {error}") from None

    has_boxes = all(rows_gt)
    return EvalContext(
        x=np.stack(rows_x),
        classes=np.asarray(rows_cls, np.int64),
        image_ids=image_ids,
        regions=rows_gt if has_boxes else None,
        scores=outputs[image_ids],
        scorer=_scorer(model, args.output_index),
        explain=explain,
        create=create,
        batch_size=args.batch_size,
        seed=args.seed,
        builtin=args.images is None,
    )


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Every chosen metric per method on built-in mosaics or the user's images."""
    from tf_clrp.cli import metric_report

    methods, chosen, options = _check_usage(args)
    boxes = load_boxes(args.boxes) if args.boxes is not None else None
    _check_two_classes(chosen, boxes, args.boxes)
    labels = load_labels(args.labels) if args.labels is not None else None
    if args.images is not None and not os.path.isdir(args.images):
        raise CliError(f"--images folder not found: {args.images}")
    started = time.perf_counter()
    if args.model is not None:
        model = models.load_user_model(args.model)
        size, channels = models.input_geometry(model, args.size)
        prep = PREPROCESSING[args.preprocess or "none"]
    else:
        model = models.efficientnet()
        size, channels = (224, 224), 3
        prep = PREPROCESSING[args.preprocess or "effnet_lite"]
    if prep.rgb_only and channels != 3:
        raise UsageError(f"--preprocess {args.preprocess} needs an RGB model")
    n_out = models.n_outputs(models.output_shape(model, args.output_index))
    if boxes is not None:
        samples = _user_samples(
            args.images, boxes, args.boxes, size, channels, args.n, args.max_megapixels
        )
        source = f"{len(samples)} image(s) from {args.images}"
    elif args.images is not None:
        samples = _labelled_samples(
            args.images, labels, args.labels, size, channels, args.n, args.max_megapixels
        )
        source = f"{len(samples)} image(s) from {args.images}, " + (
            "classes from --labels" if labels else "top class explained"
        )
    else:
        samples, used = _builtin_mosaics(model, args.n or 6, args.seed)
        source = f"{len(samples)} built-in 2x2 mosaics of {', '.join(used)} (tile = ground truth)"
    ctx = _context(args, samples, model, prep, n_out)
    for spec in chosen:
        check = spec.function("check")
        if check is not None:
            check(ctx, options[spec.name])
    rows: dict[str, dict[str, list]] = {spec.name: {} for spec in chosen}
    for method in progress_items(methods, "methods", args.quiet, unit="method"):
        for spec in chosen:
            quantities = spec.function()(ctx, method, options[spec.name])
            rows[spec.name][method] = metric_report.summarize_all(quantities, args.seed)
    for spec in chosen:
        baselines = spec.function("baselines")
        for label, quantities in (baselines(ctx, options[spec.name]) if baselines else {}).items():
            rows[spec.name][label] = metric_report.summarize_all(quantities, args.seed)
    header = f"{source}; {len(ctx.x)} (image, class) pairs"
    data = {
        "source": header,
        "methods": methods,
        "seed": args.seed,
        "bootstrap_resamples": metric_report.RESAMPLES,
        "metrics": {
            spec.name: metric_report.metric_json(spec, options[spec.name], rows[spec.name])
            for spec in chosen
        },
    }
    if args.json is not None:
        text = metric_report.write_json(data)
        if args.json == "-":
            sys.stdout.write(text + "\n")
            return 0
        _write_text(args.json, text + "\n", args.force)
    print(header)
    for spec in chosen:
        print()
        print("\n".join(metric_report.table(spec, options[spec.name], rows[spec.name], args.quiet)))
    if not args.quiet:
        print(f"(total {time.perf_counter() - started:.1f} s)")
    return 0
