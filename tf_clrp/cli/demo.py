"""``tf-clrp demo``: EfficientNet-Lite0 on bundled photos and a mosaic → figure + report.

The command's body is moved here unchanged from the former ``tf_clrp/cli.py``.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from tf_clrp.cli import models
from tf_clrp.cli.common import (
    CliError,
    _check_outputs,
    _parse_methods,
    _write_text,
    build_analyzer,
)


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
    model = models.efficientnet()
    names, photos = models.photos(models.DEMO_PHOTOS)
    if len(names) < 2:
        raise CliError("the demo needs scikit-image's sample photos: pip install scikit-image")
    t_model = time.perf_counter() - started
    x = np.asarray(preprocess_input(np.stack(photos)), np.float32)
    scores = models.model_outputs(model, x, len(x))
    top = decode_predictions(scores, top=5)
    top1 = [int(t[0][0]) for t in top]
    mosaic, boxes = make_mosaic(photos[:4], grid=(2, 2), tile=112)
    pair = (0, 1)  # the mosaic is explained for the classes of its first two tiles
    xm = np.asarray(preprocess_input(mosaic[None]), np.float32)
    mosaic_scores = models.model_outputs(model, xm, 1)[0]
    rows = np.concatenate([x, np.repeat(xm, len(pair), axis=0)])
    selection = top1 + [top1[p] for p in pair]
    maps: dict[str, np.ndarray] = {}
    timing: dict[str, float] = {}
    for name in methods:
        t0 = time.perf_counter()
        try:
            analyzer = build_analyzer(name, model, PREPROCESSING_BOUNDS, compile_fn=False)
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
        shown,
        maps,
        titles=titles,
        class_names=labels,
        show_sums=True,
        cell_size=2.2,
        suptitle="tf_clrp demo: EfficientNet-Lite0 (ImageNet), relevance of the named class",
    )
    visualize.save_png(fig, figure_path, overwrite=args.force, dpi=90)
    from tf_clrp.figures import demo_mosaic_figure

    visualize.save_png(
        demo_mosaic_figure(
            mosaic,
            {m: v[len(names) :] for m, v in maps.items()},
            labels[len(names) :],
            mosaic_scores[selection[len(names) :]],
            [boxes[p] for p in pair],
        ),
        hero_path,
        overwrite=args.force,
        dpi=100,
    )
    lines = [
        "tf_clrp demo — EfficientNet-Lite0 with ImageNet weights (offline)",
        "",
        f"model build + photos: {t_model:.1f} s",
        "",
        "Top-5 predictions:",
    ]
    for name, preds in zip(names, top):
        lines.append(f"  {name}:")
        lines.extend(f"    {idx:4d} {label:<40} {p:.3f}" for idx, label, p in preds)
    mosaic_prob = models.softmax(mosaic_scores[None])[0]
    order = np.argsort(-mosaic_prob)[:5]
    lines.append(f"  mosaic 2x2 of {', '.join(names[:4])}:")
    lines.extend(f"    {int(i):4d} {short[int(i)]:<40} {mosaic_prob[int(i)]:.3f}" for i in order)
    logit_of_row = [float(scores[i, c]) for i, c in enumerate(top1)] + [
        float(mosaic_scores[top1[p]]) for p in pair
    ]
    lines += [
        "",
        "Explained logit and relevance sum ΣR per row (biases and the first-layer "
        "rule absorb part of the logit):",
    ]
    lines.append(f"  {'row':<30}{'logit':>9}" + "".join(f"{m:>18}" for m in methods))
    for r, (title, label) in enumerate(zip(titles, labels)):
        cells = "".join(f"{float(maps[m][r].sum()):>18.4g}" for m in methods)
        lines.append(f"  {(title + ' → ' + label)[:30]:<30}{logit_of_row[r]:>9.3g}{cells}")
    lines += ["", "Mosaic Pointing Game (max of the map inside the class's tile = hit):"]
    for name in methods:
        mosaic_maps = maps[name][len(names) :]
        result = pointing_game(mosaic_maps, [boxes[p] for p in pair], [top1[p] for p in pair])
        marks = ", ".join(
            f"{short[top1[p]]}: {'hit' if result.hits.get(top1[p]) else 'miss'}" for p in pair
        )
        lines.append(f"  {name:<20} {marks}")
    lines += [
        "",
        f"Time per method (analyzer creation + one batch of {len(rows)} inputs, eager mode):",
    ]
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
