"""``tf-clrp explain``: a user's model on a user's images → PNG grids and ``.npz`` maps."""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Sequence

import numpy as np

from tf_clrp._io import progress_items
from tf_clrp.cli import models
from tf_clrp.cli.common import (
    CliError,
    UsageError,
    _check_outputs,
    _parse_methods,
    build_analyzer,
)
from tf_clrp.cli.images import collect_images, read_image
from tf_clrp.cli.outputs import (
    figure_png_bytes,
    npz_bytes,
    prepare_out_folder,
    write_together,
)
from tf_clrp.cli.preprocessing import PREPROCESSING
from tf_clrp.cli.scores import score_function, score_label


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
    files = collect_images(args.images)
    stems = _unique_stems(files)
    out = args.out
    targets = [os.path.join(out, f"{s}{ext}") for s in stems for ext in (".png", ".npz")]
    _check_outputs(targets, args.force)
    model = models.load_user_model(args.model)
    size, channels = models.input_geometry(model, args.size)
    prep = PREPROCESSING[args.preprocess]
    if prep.rgb_only and channels != 3:
        raise UsageError(
            f"--preprocess {args.preprocess} needs an RGB model; this one takes "
            f"{channels} channel(s)"
        )
    output_index = args.output_index
    output_shape = models.output_shape(model, output_index)
    n_out = models.n_outputs(output_shape)
    if classes is not None and any(c >= n_out for c in classes):
        raise UsageError(
            f"--classes {args.classes}: the model has {n_out} outputs "
            f"(valid classes 0..{n_out - 1})"
        )
    top_k = min(args.top_k or 1, n_out)
    names = models.class_names(model, args.class_names, output_shape)
    images = [read_image(f, size, channels, args.max_megapixels) for f in files]
    prepare_out_folder(out)
    compile_fn = args.compile if args.compile is not None else len(files) > 16
    bounds = (prep.low, prep.high)
    analyzers = {}
    for name in methods:
        try:
            analyzers[name] = build_analyzer(
                name, model, bounds, compile_fn, args.precision, output_index
            )
        except (TypeError, ValueError) as error:
            raise CliError(f"cannot create analyzer {name!r} for this model: {error}") from None
    explained_scores = score_function(model, output_index)
    started = time.perf_counter()
    chunks = [
        list(range(i, min(i + args.batch_size, len(files))))
        for i in range(0, len(files), args.batch_size)
    ]
    for chunk in progress_items(chunks, "explaining", args.quiet):
        x = prep.apply(np.stack([images[i] for i in chunk]))
        scores = models.model_outputs(model, x, args.batch_size, output_index)
        logits, probabilities = explained_scores(x)
        per_image = (
            [list(classes) for _ in chunk]
            if classes is not None
            else [list(np.argsort(-s, kind="stable")[:top_k]) for s in logits]
        )
        rows = np.concatenate(
            [np.repeat(x[j : j + 1], len(c), axis=0) for j, c in enumerate(per_image)]
        )
        selection = [int(c) for cs in per_image for c in cs]
        maps = {}
        for name, analyzer in analyzers.items():
            try:
                maps[name] = analyzer.analyze(
                    rows, neuron_selection=selection, batch_size=args.batch_size
                )
            except Exception as error:  # noqa: BLE001 - report which method failed
                raise CliError(f"method {name!r} failed: {type(error).__name__}: {error}") from None
        offset = 0
        for j, index in enumerate(chunk):
            k = len(per_image[j])
            part = {name: m[offset : offset + k] for name, m in maps.items()}
            offset += k
            shown = np.repeat(images[index][None], k, axis=0)
            labels = [
                score_label(int(c), names, logits[j, c], probabilities[j, c]) for c in per_image[j]
            ]
            fig = visualize.comparison_grid(
                shown,
                part,
                titles=[os.path.basename(files[index])] * k,
                class_names=labels,
                overlay_alpha=args.alpha,
                show_sums=True,
            )
            base = os.path.join(out, stems[j + chunk[0]])
            arrays = {
                "image": images[index],
                "input": x[j],
                "classes": np.asarray(per_image[j], np.int64),
                "scores": scores[j].astype(np.float32),
                "logits": logits[j].astype(np.float32),
                "probabilities": probabilities[j].astype(np.float32),
            }
            arrays.update(part)
            write_together(
                [(base + ".npz", npz_bytes(arrays)), (base + ".png", figure_png_bytes(fig))],
                args.force,
            )
    elapsed = time.perf_counter() - started
    if not args.quiet:
        print(
            f"explained {len(files)} image(s) with {', '.join(methods)} in {elapsed:.1f} s; "
            f"wrote {len(files)} PNG grid(s) and .npz file(s) to {os.path.abspath(out)}"
        )
    return 0


def _parse_classes(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UsageError(f"--classes must be comma-separated ints like 3,5; got {text!r}") from None
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
