"""The ``tf-clrp`` argument parser (imports no TensorFlow)."""

from __future__ import annotations

import argparse

from tf_clrp.cli.common import DEFAULT_METHODS
from tf_clrp.cli.demo import cmd_demo
from tf_clrp.cli.evaluate import cmd_evaluate
from tf_clrp.cli.explain import cmd_explain
from tf_clrp.cli.images import DEFAULT_MAX_MEGAPIXELS
from tf_clrp.cli.listing import cmd_list
from tf_clrp.cli.metric_table import (
    METRICS,
    add_metric_options,
    finite_positive,
    metrics_epilog,
)
from tf_clrp.cli.preprocessing import PREPROCESSING

#: Commands that run models (TensorFlow is imported, quietly, before they start).
MODEL_COMMANDS = frozenset({"demo", "explain", "evaluate"})


def _shared_flags(suppress: bool) -> argparse.ArgumentParser:
    """``--debug`` and ``--verbose``, accepted before and after the command."""
    default = argparse.SUPPRESS if suppress else False
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument(
        "--debug", action="store_true", default=default, help="show tracebacks of unexpected errors"
    )
    parent.add_argument(
        "--verbose",
        action="store_true",
        default=default,
        help="keep TensorFlow's log lines (hidden by default unless TF_CPP_MIN_LOG_LEVEL is set)",
    )
    return parent


def _add_model_options(command: argparse.ArgumentParser) -> None:
    """Options of the commands that read the user's images into a model."""
    command.add_argument(
        "--output-index",
        type=int,
        metavar="N",
        help="which output of a multi-output model to explain (required for such models)",
    )
    command.add_argument(
        "--max-megapixels",
        type=finite_positive,
        metavar="MP",
        default=DEFAULT_MAX_MEGAPIXELS,
        help=f"refuse larger images before decoding them (default {DEFAULT_MAX_MEGAPIXELS:g})",
    )


def build_parser() -> argparse.ArgumentParser:
    """The ``tf-clrp`` argument parser."""
    from tf_clrp import __version__

    shared = _shared_flags(suppress=True)
    parser = argparse.ArgumentParser(
        prog="tf-clrp",
        description="Contrastive LRP and the LRP family for Keras models.",
        epilog="Exit codes: 0 ok, 1 runtime problem (files, models, analyzers), 2 usage error.",
        parents=[_shared_flags(suppress=False)],
    )
    parser.add_argument(
        "--version",
        action="version",
        version=f"tf_clrp {__version__}",
        help="print the version and exit",
    )
    sub = parser.add_subparsers(
        dest="command", metavar="COMMAND", help="run 'tf-clrp COMMAND --help' for its options"
    )

    demo = sub.add_parser(
        "demo",
        parents=[shared],
        help="explain bundled photos with the offline EfficientNet-Lite0 (figure + report)",
    )
    demo.add_argument(
        "--out", default="tf_clrp_demo", help="output folder (default: ./tf_clrp_demo)"
    )
    demo.add_argument("--force", action="store_true", help="overwrite existing outputs")
    demo.add_argument("--methods", help=f"comma-separated (default: {','.join(DEFAULT_METHODS)})")
    demo.add_argument("-q", "--quiet", action="store_true", help="print nothing on success")
    demo.set_defaults(func=cmd_demo)

    explain = sub.add_parser(
        "explain", parents=[shared], help="explain image files with a .keras/.h5 model"
    )
    explain.add_argument("model", metavar="MODEL", help=".keras or .h5 full-model file")
    explain.add_argument(
        "images",
        metavar="IMAGES",
        nargs="+",
        help="image files and/or folders (read with OpenCV as RGB)",
    )
    explain.add_argument(
        "--methods",
        help=f"comma-separated analyzer names (default: "
        f"{','.join(DEFAULT_METHODS)}); see 'tf-clrp list'",
    )
    which = explain.add_mutually_exclusive_group()
    which.add_argument("--classes", help="explain these class indices for every image, e.g. 3,5")
    which.add_argument(
        "--top-k", type=int, help="explain each image's k top-scoring classes (default 1)"
    )
    explain.add_argument(
        "--preprocess",
        choices=sorted(PREPROCESSING),
        default="none",
        help="how 0..255 RGB becomes model input (default: none)",
    )
    explain.add_argument(
        "--size",
        type=int,
        nargs=2,
        metavar=("H", "W"),
        help="resize images to H W (default: the model's input size)",
    )
    explain.add_argument("--batch-size", type=int, default=8, help="images per batch (default 8)")
    explain.add_argument(
        "--out", default="tf_clrp_explain", help="output folder (default: ./tf_clrp_explain)"
    )
    explain.add_argument("--force", action="store_true", help="overwrite existing outputs")
    explain.add_argument("--class-names", help="text file with one class name per line")
    explain.add_argument(
        "--alpha",
        type=float,
        default=None,
        help="blend heatmaps over the image with this weight (default: off)",
    )
    explain.add_argument(
        "--compile",
        dest="compile",
        action="store_true",
        default=None,
        help="compile analyzers with tf.function (default: when > 16 images)",
    )
    explain.add_argument(
        "--no-compile",
        dest="compile",
        action="store_false",
        help="run the analyzers eagerly, even for more than 16 images",
    )
    explain.add_argument(
        "--precision",
        choices=("float32", "mixed", "bfloat16"),
        default="float32",
        help="dtype of the LRP rules' convolutions: "
        "'mixed' and 'bfloat16' are faster on CPUs with bf16 units, at a "
        "small cost in accuracy (figures: BENCHMARKS.md; default float32)",
    )
    _add_model_options(explain)
    explain.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    explain.set_defaults(func=cmd_explain)

    evaluate = sub.add_parser(
        "evaluate",
        parents=[shared],
        help=f"evaluate methods with metrics ({', '.join(METRICS)})",
        description="Scores explanation methods with the metrics of tf_clrp.metrics on the\n"
        "built-in mosaics or your images: one table per metric (value, 95 % bootstrap\n"
        "interval, n) or JSON.",
        epilog=metrics_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    evaluate.add_argument(
        "--images",
        help="folder of images (those named in --boxes or "
        "--labels; else every image in it, explaining the top class)",
    )
    evaluate.add_argument(
        "--boxes",
        help='JSON: {"img.jpg": [{"class": 3, "box": '
        "[y0, x0, y1, x1]}, ...], ...} (original pixels, half-open; keys "
        "are paths inside --images)",
    )
    evaluate.add_argument(
        "--labels",
        help='JSON: {"img.jpg": 3 or [3, 5], ...}: the '
        "classes to explain per image (default: the top class)",
    )
    evaluate.add_argument("--model", help=".keras/.h5 model (default: built-in EfficientNet-Lite0)")
    evaluate.add_argument(
        "--preprocess",
        choices=sorted(PREPROCESSING),
        help="default: effnet_lite for the built-in model, none otherwise",
    )
    evaluate.add_argument(
        "--size",
        type=int,
        nargs=2,
        metavar=("H", "W"),
        help="input size for --model models without a fixed size",
    )
    evaluate.add_argument(
        "--methods", help=f"comma-separated (default: {','.join(DEFAULT_METHODS)})"
    )
    evaluate.add_argument("--n", type=int, help="number of mosaics (default 6) or of images")
    evaluate.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of the mosaic layout, random orders, noise and the bootstrap (default 0)",
    )
    evaluate.add_argument("--batch-size", type=int, default=8, help="chunk size (default 8)")
    evaluate.add_argument(
        "--json",
        metavar="FILE",
        help="also write the results (with "
        "per-sample values) as JSON to FILE; '-' prints JSON instead of "
        "the tables",
    )
    evaluate.add_argument("--force", action="store_true", help="overwrite an existing --json file")
    _add_model_options(evaluate)
    evaluate.add_argument("-q", "--quiet", action="store_true", help="print only the tables")
    add_metric_options(evaluate)
    evaluate.set_defaults(func=cmd_evaluate)

    lister = sub.add_parser(
        "list", parents=[shared], help="list analyzers, presets and preprocessing options"
    )
    lister.add_argument(
        "--options",
        action="store_true",
        help="also print each analyzer's own options with their defaults",
    )
    lister.set_defaults(func=cmd_list)
    return parser
