"""``tf-clrp evaluate``: Pointing Game accuracy per method, on mosaics or the user's boxes."""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tf_clrp.cli.common import (
    RECOGNISED_PHOTOS,
    CliError,
    UsageError,
    _create,
    _efficientnet,
    _input_geometry,
    _load_user_model,
    _model_outputs,
    _n_outputs,
    _output_shape,
    _parse_methods,
    _photos,
    _progress,
)
from tf_clrp.cli.images import read_image
from tf_clrp.cli.preprocessing import PREPROCESSING


@dataclass
class _EvalSample:
    """One evaluated image and its ground-truth boxes per class."""

    image: np.ndarray
    regions: dict[int, list[tuple[int, int, int, int]]]
    name: str


def _builtin_mosaics(model: Any, n: int, seed: int) -> tuple[list[_EvalSample], list[str]]:
    """``n`` 2x2 mosaics of bundled photos of distinct top-1 classes; tile = ground truth."""
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


def _image_in_folder(folder: str, name: str, boxes_path: str) -> str:
    """The file a box-file key names; keys are relative paths that stay inside ``folder``.

    Raises:
        CliError: an absolute key, a key leaving the folder (``..``, a symbolic link out of
            it) or a key naming no file.
    """
    if os.path.isabs(name) or os.path.splitdrive(name)[0]:
        raise CliError(f"{boxes_path}: key {name!r} is an absolute path; keys are file names "
                       f"relative to --images {folder}")
    root = os.path.realpath(folder)
    path = os.path.realpath(os.path.join(root, name))
    if os.path.commonpath([root, path]) != root or ".." in name.replace("\\", "/").split("/"):
        raise CliError(f"{boxes_path}: key {name!r} leaves the --images folder {folder}; keys "
                       "are file names inside it")
    if not os.path.isfile(path):
        raise CliError(f"{boxes_path} names {name!r}, which is not in {folder}")
    return path


def _user_samples(folder: str, boxes_path: str, size: tuple[int, int], channels: int,
                  n: int | None, max_megapixels: float) -> list[_EvalSample]:
    if not os.path.isdir(folder):
        raise CliError(f"--images folder not found: {folder}")
    boxes = load_boxes(boxes_path)
    samples = []
    for name, entries in list(boxes.items())[:n]:
        path = _image_in_folder(folder, name, boxes_path)
        raw = read_image(path, None, channels, max_megapixels)
        height, width = raw.shape[:2]
        image = raw if (height, width) == size else read_image(path, size, channels,
                                                               max_megapixels)
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
        samples = _user_samples(args.images, args.boxes, size, channels, args.n,
                                args.max_megapixels)
        source = f"{len(samples)} image(s) from {args.images}"
    else:
        if args.model is not None:
            raise UsageError("the built-in mosaics need the built-in model; with --model pass "
                             "--images and --boxes")
        samples, used = _builtin_mosaics(model, args.n or 6, args.seed)
        source = (f"{len(samples)} built-in 2x2 mosaics of {', '.join(used)} "
                  "(tile = ground truth)")
    n_out = _n_outputs(_output_shape(model, args.output_index))
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
            analyzer = _create(name, model, (prep.low, prep.high), compile_fn,
                               output_index=args.output_index)
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
