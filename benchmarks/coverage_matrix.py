"""Which keras.applications architectures tf_clrp explains, and how well.

Usage:
    python benchmarks/coverage_matrix.py                      # full matrix (~1 h, 1 thread)
    python benchmarks/coverage_matrix.py --models '' --json /tmp/t.json  # transformer rows
    python benchmarks/coverage_matrix.py --models MobileNetV2,ResNet50 --variants plain
    python benchmarks/coverage_matrix.py --analyzers gradient,clrp --json /tmp/c.json --md ''
    python benchmarks/coverage_matrix.py --render benchmarks/results/coverage.json  # md only
    python benchmarks/coverage_matrix.py --render a.json b.json --json both.json  # merge runs

Every model is built with ``weights=None`` (random weights, nothing downloaded) at its
smallest allowed input size, once as the full classifier ("plain", softmax head stripped by
the canonizer) and once nested inside ``keras.Sequential([keras.Input(...), base(
include_top=False, pooling="avg"), keras.layers.Dense(5)])`` ("nested", transfer learning).
Each analyzer explains the max-activation logit of a batch of 2 random inputs in the range
the model expects. Recorded per cell:

* ``ok`` / ``error``: whether ``create_analyzer`` + ``analyze`` ran (first line of the error);
* ``forward_rel``: max|mirrored forward − Keras logits| / max|logits|: the rule-bearing
  mirrored model must compute the same function as the user's model;
* ``finite`` / ``nonzero``: the map is finite and not identically zero;
* ``conservation``: max over the batch of |ΣR − seed| / |seed| (LRP family; for CLRP and
  SGLRP the target part, whose seed is |z_j| resp. p_j(1 − p_j)); ``promised`` is True
  only for the LRP-0 engine check ``EXACT`` (see ``CONSERVATION_TOL``);
* ``gradient_rel``: for "gradient", max|R − ∂z_j/∂x| / max|∂z_j/∂x| against autodiff;
* ``setup_s``: create + first analyze (graph walk, tracing); ``s_per_image``: a second call.

Transformers and custom layers (keras_hub ViT/DeiT/BERT, stock-Keras attention models, a
subclassed CNN block) are rows of their own, measured by ``coverage_any_model.py``
(``--any-models``; every analyzer either works or refuses naming the op it has no rule for).

Writes ``benchmarks/results/coverage.json`` and ``docs/coverage.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import tf_clrp  # noqa: E402
from tf_clrp import layers as tfc_layers  # noqa: E402
from tf_clrp.analyzers.base import build_graph  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import coverage_any_model as any_model  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
APPS = keras.applications

#: name -> (constructor, smallest input size, input value range the model expects).
MODELS: dict[str, tuple[Callable[..., keras.Model], int, tuple[float, float]]] = {
    "VGG16": (APPS.VGG16, 32, (-1.0, 1.0)),
    "VGG19": (APPS.VGG19, 32, (-1.0, 1.0)),
    "ResNet50": (APPS.ResNet50, 32, (-1.0, 1.0)),
    "ResNet50V2": (APPS.ResNet50V2, 32, (-1.0, 1.0)),
    "InceptionV3": (APPS.InceptionV3, 75, (-1.0, 1.0)),
    "Xception": (APPS.Xception, 71, (-1.0, 1.0)),
    "MobileNet": (APPS.MobileNet, 32, (-1.0, 1.0)),
    "MobileNetV2": (APPS.MobileNetV2, 32, (-1.0, 1.0)),
    "MobileNetV3Small": (APPS.MobileNetV3Small, 32, (0.0, 255.0)),
    "DenseNet121": (APPS.DenseNet121, 32, (-1.0, 1.0)),
    "EfficientNetB0": (APPS.EfficientNetB0, 32, (0.0, 255.0)),
    "ConvNeXtTiny": (APPS.ConvNeXtTiny, 32, (0.0, 255.0)),
    "NASNetMobile": (APPS.NASNetMobile, 32, (-1.0, 1.0)),
}

#: Extra create_analyzer options per model, tried as a second row when the default fails
#: (the documented escape hatch for layers tf_clrp has no rule for).
ESCAPE_HATCHES: dict[str, dict[str, Any]] = {
    "ConvNeXtTiny": {"layer_rules": {"LayerScale": tf_clrp.rules.Pass()}},
}

#: LRP-0 with a negligible stabilizer: the engine check (see ``CONSERVATION_TOL``).
EXACT = "lrp.z(ε=1e-20)"

#: Engine bugs behind ⚠/✗ cells (xfail tests in tests/test_coverage.py): model -> text.
#: Empty since the fixes of 5b56290 (MobileNetV3's `x + 3.0`, ConvNeXt's LayerScale /
#: LayerNormalization, guided backprop through non-rectifiers); add an entry with its xfail.
KNOWN_ISSUES: dict[str, str] = {}

#: (label, registry name, options).
ANALYZERS: tuple[tuple[str, str, dict[str, Any]], ...] = (
    ("gradient", "gradient", {}),
    ("guided_backprop", "guided_backprop", {}),
    ("lrp.z_plus", "lrp.z_plus", {}),
    ("lrp.epsilon_plus", "lrp.epsilon_plus", {}),
    ("lrp.epsilon(0.1)", "lrp.epsilon", {"epsilon": 0.1}),
    ("lrp.sequential_preset_a", "lrp.sequential_preset_a", {}),
    ("clrp", "clrp", {}),
    ("sglrp", "sglrp", {}),
    (EXACT, "lrp", {"rule": tf_clrp.rules.Z(epsilon=1e-20)}),
)

#: Conservation. All biases of these random models are 0 (Keras initializes biases and β to
#: 0; ``calibrate_batch_norm`` keeps BatchNorm means at 0), so what is measured is what each
#: rule does by itself. Reported, not judged: z⁺ (lrp.z_plus, and CLRP/SGLRP with z^B on
#: the first layer) loses the relevance that reaches a unit without positive contribution
#: (z⁺ = 0): with rectifiers such a unit is dead and receives nothing, but negative units
#: (linear bottlenecks, swish/GELU outputs) can receive relevance through a⁻w⁻; ε = 0.1 and
#: ε = 1e-6 on Dense (epsilon, epsilon_plus, sequential_preset_a) absorb relevance; α1β0
#: loses the relevance of units without positive part like z⁺. Promised is the engine's
#: part, ``EXACT``: LRP-0 with a negligible stabilizer has the pre-activations themselves
#: as denominators, and every other rule on the path (Norm for sums and average pooling,
#: Pass for BatchNorm-affine / Rescaling / gates / activations, gradient routing for
#: max-pooling / concatenation / reshapes) is conservative, so ΣR equals the logit for any
#: bias-free architecture up to float32 rounding.
CONSERVATION_TOL = 1e-3
#: Mirrored forward vs Keras logits, relative to max|logit| (measured: ≤ 1e-5; BatchNorm
#: folding reorders the float32 products).
FORWARD_TOL = 1e-3
#: ``gradient`` vs autodiff of the Keras model, relative to max|∂z/∂x|. Not 1e-6: BatchNorm
#: folding changes float32 rounding, which flips ReLU gates of pre-activations ~0 and
#: max-pooling near-ties (InceptionV3: 9e-3 folded, exactly 0 with fold_batch_norm=False).
GRADIENT_TOL = 1e-2
LRP_FAMILY = frozenset(
    {
        "lrp.z_plus",
        "lrp.epsilon_plus",
        "lrp.epsilon(0.1)",
        "lrp.sequential_preset_a",
        "clrp",
        "sglrp",
        EXACT,
    }
)


def build(name: str, variant: str, size: int = 0) -> tuple[keras.Model, tuple[float, float]]:
    """A model with random weights: the full classifier or nested in a transfer model.

    Args:
        name: Key of ``MODELS``.
        variant: "plain" or "nested".
        size: Input height/width; 0 (or less than the model's minimum) uses the minimum.

    Returns:
        The model and the input value range it expects.
    """
    constructor, smallest, value_range = MODELS[name]
    size = max(size, smallest)
    shape = (size, size, 3)
    keras.utils.set_random_seed(0)
    if variant == "plain":
        return constructor(weights=None, input_shape=shape, classes=10), value_range
    base = constructor(weights=None, include_top=False, pooling="avg", input_shape=shape)
    model = keras.Sequential(
        [keras.Input(shape), base, keras.layers.Dense(5)], name=f"transfer_{name.lower()}"
    )
    return model, value_range


def _all_layers(model: keras.Model) -> list[keras.layers.Layer]:
    """The model's layers, those of nested models included."""
    out = []
    for layer in model.layers:
        out.append(layer)
        if isinstance(layer, keras.Model):
            out.extend(_all_layers(layer))
    return out


def calibrate_batch_norm(model: keras.Model, x: np.ndarray) -> int:
    """Rescales every BatchNorm so that its output has RMS |γ| on ``x`` (means stay 0).

    With ``weights=None`` the moving statistics are (0, 1), and deep SE models (MobileNetV3)
    then produce logits of ~1e-12, below the rules' stabilizers. One inference pass sets,
    layer after layer, moving_mean = 0 and moving_variance = E[input²] (one value for all
    channels). Per-channel mean/variance would be ill-conditioned here: at 32×32 the last
    stages are 1×1 and random images give nearly identical deep features, so dividing by
    their tiny spread turns float32 rounding into ~1e-3 errors of the logits. All biases of
    these models are then 0 (Keras initializes biases and β to 0).

    Returns:
        The number of BatchNorm layers calibrated.
    """
    norms = [
        layer for layer in _all_layers(model) if isinstance(layer, keras.layers.BatchNormalization)
    ]

    def hooked(
        layer: keras.layers.BatchNormalization, original: Callable[..., Any]
    ) -> Callable[..., Any]:
        def call(inputs: Any, *args: Any, **kwargs: Any) -> Any:
            second_moment = float(np.mean(np.square(np.asarray(inputs, dtype=np.float64))))
            layer.moving_mean.assign(np.zeros(layer.moving_mean.shape, "float32"))
            layer.moving_variance.assign(
                np.full(layer.moving_variance.shape, second_moment, "float32")
            )
            return original(inputs, *args, **kwargs)

        return call

    for layer in norms:
        layer.call = hooked(layer, layer.call)
    try:
        model(x, training=False)
    finally:
        for layer in norms:
            del layer.call
    return len(norms)


def logits_function(model: keras.Model) -> Callable[[tf.Tensor], tf.Tensor]:
    """The model's pre-softmax output, computed with Keras (the reference)."""
    last = model.layers[-1]
    if isinstance(last, (keras.layers.Activation, keras.layers.Softmax)):
        return keras.Model(model.inputs, last.input)
    if isinstance(last, keras.layers.Dense) and tfc_layers.fused_activation(last) != "linear":
        features = keras.Model(model.inputs, last.input)

        def logits(x: tf.Tensor) -> tf.Tensor:
            z = tf.matmul(features(x, training=False), tf.convert_to_tensor(last.kernel))
            return z + tf.convert_to_tensor(last.bias)

        return logits
    return lambda x: model(x, training=False)


def non_rectifiers(model: keras.Model) -> list[str]:
    """Names of the non-rectifier activations in the canonical graph."""
    graph = build_graph(model)
    return sorted(
        {
            n.activation or "?"
            for n in graph.nodes
            if n.group == "activation" and n.activation not in tfc_layers.RECTIFIERS
        }
    )


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"[:300]


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a - b)) / max(float(np.max(np.abs(b))), 1e-12))


def evaluate(
    model: keras.Model,
    x: np.ndarray,
    label: str,
    name: str,
    options: dict[str, Any],
    logits: np.ndarray,
    true_grad: np.ndarray,
) -> dict[str, Any]:
    """Runs one analyzer on one model and measures it."""
    cell: dict[str, Any] = {"analyzer": label, "ok": False}
    target = logits.argmax(axis=1)
    start = time.perf_counter()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            analyzer = tf_clrp.create_analyzer(name, model, **options)
            if name in ("clrp", "sglrp"):
                parts = analyzer.analyze(x, neuron_selection="max_activation", return_parts=True)
                relevance, conserved = parts.contrastive, parts.target
            else:
                relevance = conserved = analyzer.analyze(x, neuron_selection="max_activation")
        cell["setup_s"] = round(time.perf_counter() - start, 2)
        start = time.perf_counter()
        analyzer.analyze(x, neuron_selection="max_activation")
        cell["s_per_image"] = round((time.perf_counter() - start) / len(x), 4)
    except Exception as error:  # noqa: BLE001 - the matrix records every failure
        cell["error"] = _first_line(error)
        return cell
    cell["ok"] = True
    cell["warnings"] = sorted({str(w.message)[:160] for w in caught})
    mirrored = analyzer.mirror(tf.constant(x)).numpy().reshape(len(x), -1)
    cell["forward_rel"] = _rel(mirrored[:, : logits.shape[1]], logits)
    cell["finite"] = bool(np.isfinite(relevance).all())
    cell["nonzero"] = bool(np.abs(relevance).sum() > 0)
    if label in LRP_FAMILY:
        chosen = logits[np.arange(len(x)), target]
        if name == "clrp":
            seed = np.abs(chosen)
        elif name == "sglrp":
            p = tf.nn.softmax(logits, axis=1).numpy()[np.arange(len(x)), target]
            seed = p * (1.0 - p)
        else:
            seed = chosen
        total = conserved.reshape(len(x), -1).sum(axis=1)
        cell["conservation"] = float(np.max(np.abs(total - seed) / np.maximum(np.abs(seed), 1e-12)))
        cell["promised"] = label == EXACT
    if label == "gradient":
        cell["gradient_rel"] = _rel(relevance, true_grad)
    return cell


def _reference(model: keras.Model, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Keras logits of ``x`` and the autodiff gradient of each sample's max logit."""
    logits_of = logits_function(model)
    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        z = logits_of(xt)
        picked = tf.reduce_sum(z * tf.one_hot(tf.argmax(z, axis=1), z.shape[1]))
    return z.numpy(), tape.gradient(picked, xt).numpy()


def _report(cell: dict[str, Any]) -> None:
    status = "ok" if cell["ok"] else cell["error"][:90]
    print(
        f"  {cell['analyzer']:24s} {status}  fwd={cell.get('forward_rel', float('nan')):.1e} "
        f"cons={cell.get('conservation', float('nan')):.1e} "
        f"t={cell.get('s_per_image', float('nan'))}",
        flush=True,
    )


def run_model(
    name: str,
    variant: str,
    analyzers: list[tuple[str, str, dict[str, Any]]],
    extra: dict[str, Any] | None = None,
    size: int = 0,
) -> dict[str, Any]:
    """All analyzers on one model variant."""
    row: dict[str, Any] = {
        "model": name,
        "variant": variant,
        "options": sorted(extra) if extra else [],
    }
    start = time.perf_counter()
    try:
        model, (low, high) = build(name, variant, size)
    except Exception as error:  # noqa: BLE001
        row["error"] = _first_line(error)
        return row
    row["build_s"] = round(time.perf_counter() - start, 2)
    row["input_shape"] = list(model.input_shape[1:])
    row["n_layers"] = len(model.layers)
    rng = np.random.default_rng(0)
    x = rng.uniform(low, high, (2, *model.input_shape[1:])).astype(np.float32)
    others = rng.uniform(low, high, (6, *model.input_shape[1:])).astype(np.float32)
    row["batch_norms"] = calibrate_batch_norm(model, np.concatenate([x, others]))
    logits, true_grad = _reference(model, x)
    row["max_logit"] = float(np.abs(logits).max())
    try:
        row["non_rectifiers"] = non_rectifiers(model)
    except Exception as error:  # noqa: BLE001
        row["non_rectifiers"] = []
        row["graph_error"] = _first_line(error)
    row["cells"] = []
    for label, analyzer_name, options in analyzers:
        cell = evaluate(
            model, x, label, analyzer_name, {**options, **(extra or {})}, logits, true_grad
        )
        row["cells"].append(cell)
        _report(cell)
    keras.backend.clear_session()
    return row


# ----------------------------------------------------------------------------- markdown
def _cell_text(cell: dict[str, Any]) -> str:
    if not cell["ok"]:
        return "✗ " + cell["error"].split(":")[0]
    bad = any_model.cell_problems(cell, FORWARD_TOL, GRADIENT_TOL)
    if "conservation" in cell:
        text = f"{cell['conservation']:.0e}"
        if cell["promised"] and cell["conservation"] > CONSERVATION_TOL:
            bad.append(f"cons {text}")
        elif not cell["promised"]:
            text = f"({text})"
    else:
        text = ""
    mark = "✓" if not bad else "⚠ " + ", ".join(bad)
    return f"{mark} {text}".strip() if not bad else mark


def markdown(result: dict[str, Any]) -> str:
    """The coverage report."""
    labels = [a[0] for a in ANALYZERS if a[0] in result["analyzers"]]
    commands = " and ".join(f"`{c}`" for c in result["command"].split(" && "))
    several = len({row.get("git", result["git"]) for row in result["rows"]}) > 1
    lines = [
        "# Architecture coverage",
        "",
        "Generated by " + commands + " on tf_clrp " + result["git"] + " "
        f"(Keras {result['keras']}, TensorFlow {result['tensorflow']}, "
        f"{result['threads']} CPU thread(s), batch 2, random weights).",
        *(
            [
                "Rows come from several runs; the `engine` column is the commit each row was",
                "measured on (the later run's row replaces an earlier one).",
            ]
            if several
            else []
        ),
        "Do not edit by hand; rerun the command. `s/img` is a wall time on a shared machine",
        "(other jobs running), not a speed figure; see BENCHMARKS.md for speed.",
        "",
        "Each model is built with `weights=None` at its smallest input size, *plain* (full",
        "classifier; the softmax is stripped, logits are explained) and *nested* "
        '(`keras.Sequential([keras.Input(...), base(include_top=False, pooling="avg"), '
        "keras.layers.Dense(5)])`). The max-activation logit of 2 random inputs is explained.",
        "BatchNorms are rescaled on these 2 and 6 more random inputs (moving mean 0, moving",
        "variance = E[input²], layer by layer): with the initial (0, 1) statistics deep SE",
        "models give logits of ~1e-12, below the rules' stabilizers. `max|z|` is the largest",
        "logit magnitude.",
        "",
        "Legend: ✓ ran, the mirrored (rule-bearing) model computes the Keras logits",
        "(max error ≤ 1e-3·max|z|) and the map is finite and non-zero. The number is the",
        "conservation error max|ΣR − seed|/|seed|; in parentheses it is only reported (see",
        "below), without parentheses it is promised to be ≤ 1e-3. ⚠ lists what is wrong",
        "(`fwd`: the mirrored forward differs from the model, `grad`: `gradient` differs from",
        "autodiff of the model by more than 1e-2·max|∂z/∂x|, `cons`: a promised conservation",
        "is broken, `all-zero`, `non-finite`). ✗ failed (error class; first lines of the",
        "errors below).",
        "",
        "| model | variant | max\\|z\\| | "
        + " | ".join(labels)
        + " | s/img (z+) |"
        + (" engine |" if several else ""),
        "|---|---|---|" + "---|" * len(labels) + "---|" + ("---|" if several else ""),
    ]
    errors: dict[str, list[str]] = {}
    for row in result["rows"]:
        model = row["model"] + (f" + {', '.join(row['options'])}" if row["options"] else "")
        if "cells" not in row:
            lines.append(
                f"| {model} | {row['variant']} | | "
                + " | ".join(["✗ build"] * len(labels))
                + " | |"
            )
            errors.setdefault(row["error"], []).append(f"{model} ({row['variant']})")
            continue
        cells = {c["analyzer"]: c for c in row["cells"]}
        texts = [_cell_text(cells[label]) if label in cells else "" for label in labels]
        zplus = cells.get("lrp.z_plus", {}).get("s_per_image", "")
        lines.append(
            f"| {model} | {row['variant']} | {row['max_logit']:.1e} | "
            + " | ".join(texts)
            + f" | {zplus} |"
            + (f" {row.get('git', result['git'])} |" if several else "")
        )
        for cell in row["cells"]:
            if not cell["ok"]:
                errors.setdefault(cell["error"], []).append(
                    f"{model} ({row['variant']}, {cell['analyzer']})"
                )
    shown_issues = [
        name for name in KNOWN_ISSUES if any(row["model"] == name for row in result["rows"])
    ]
    if shown_issues:
        lines += ["", "## Known engine bugs", ""]
        lines += [f"* {name}: {KNOWN_ISSUES[name]}" for name in shown_issues]
    if result.get("any_model_rows"):
        lines += any_model.markdown(result["any_model_rows"], result["any_model_analyzers"])
    lines += ["", "## Errors", ""]
    if not errors:
        lines.append("None.")
    for error, where in errors.items():
        shown = ", ".join(where[:6]) + (f" and {len(where) - 6} more" if len(where) > 6 else "")
        lines.append(f"* `{error}` — {shown}")
    lines += ["", "## Non-rectifier activations", ""]
    listed: set[str] = set()
    for row in result["rows"]:
        if row.get("non_rectifiers") and row["model"] not in listed:
            listed.add(row["model"])
            lines.append(f"* {row['model']}: {', '.join(row['non_rectifiers'])}")
    lines += [
        "",
        "LRP's rules are derived for rectifier networks (ReLU family): relevance crosses a",
        "ReLU unchanged because the unit is linear where it is active. For swish/SiLU, GELU,",
        "hard-swish and sigmoid gates tf_clrp does the same — the relevance at the",
        'activation\'s output is handed to its input unchanged (the `"pass"` activation',
        "mode) — and warns once per activation name (`UserWarning: layer ... uses the",
        "non-rectifier activation 'silu'`). The activation then neither creates nor destroys",
        "relevance, but the map is an approximation — a unit with negative swish output can",
        "carry positive relevance — and z⁺-type rules are no longer conservative (see below:",
        'the warning\'s "maps are still conservative" holds for LRP-0/ε, not for z⁺).',
        "SE / gating blocks (`Multiply`) hand all relevance to the main path; the gate gets",
        'none (rule `Pass` on group "multiply").',
        "",
        "`guided_backprop` and `deconvnet` apply their ReLU rules to rectifiers only; through",
        "swish/hard-swish, GELU and sigmoid they keep the plain gradient (as iNNvestigate",
        "does), so their maps on these models are not all-zero.",
        "",
        "## What conservation means here",
        "",
        "All biases of these random models are 0 (Keras initializes biases and β to 0 and the",
        "calibration keeps BatchNorm means at 0), so the numbers show what each rule does by",
        "itself; with trained weights the biases — including those BatchNorm folding creates",
        "— additionally absorb relevance under ε/z/α1β0 and are ignored by z⁺/z^B.",
        "",
        "* `lrp.z_plus`, `clrp`, `sglrp` (z⁺, and z^B on the first layer for CLRP/SGLRP):",
        "  relevance that reaches a unit without positive contribution (z⁺ = 0) is lost. With",
        "  rectifiers such a unit is dead and receives nothing, so ReLU networks conserve to",
        "  float precision. Negative units — linear bottlenecks (MobileNetV2, EfficientNet),",
        "  swish/GELU/hard-swish outputs — can receive relevance through a⁻w⁻ and lose it. This",
        "  hits depthwise convolutions at the smallest input sizes hardest: the last stages",
        "  are 1×1 or 2×2, so a depthwise unit sees one to four non-padding inputs. At",
        "  128×128 the loss of EfficientNetB0 and MobileNetV3Small drops to ~3 %",
        "  (`--size 128 --analyzers lrp.z_plus`).",
        "* `lrp.epsilon(0.1)`: ε = 0.1 absorbs most of the relevance when logits are O(1);",
        "  `lrp.epsilon_plus` and `lrp.sequential_preset_a` use ε = 1e-6 resp. 0.1 on Dense",
        "  layers and z⁺ resp. α1β0 (which, like z⁺, drops units without positive part) on",
        "  convolutions.",
        "",
        f"Promised — the `{EXACT}` column, the only number without parentheses — is the",
        "engine's part: LRP-0 with a negligible stabilizer has the pre-activations",
        "themselves as denominators, and every other rule on the path (Norm for sums and",
        "average pooling, Pass for BatchNorm-affine / Rescaling / gates / activations,",
        "gradient routing for max-pooling / concatenation / reshapes) is conservative, so",
        "ΣR must equal the logit (≤ 1e-3, float32) for every bias-free architecture.",
        "Gradient methods have no conservation property; `gradient` is compared with",
        "autodiff of the Keras model instead. It is computed on the BatchNorm-folded graph,",
        "whose float32 rounding differs: ReLU gates of pre-activations ~0 and max-pooling",
        "near-ties can flip (InceptionV3: up to 9e-3·max|∂z/∂x| on 5 % of the pixels;",
        "exactly 0 with `fold_batch_norm=False`).",
        "",
    ]
    return "\n".join(lines)


def merge(results: list[dict[str, Any]]) -> dict[str, Any]:
    """One result from runs of different rows: a later run's row replaces an earlier row of
    the same model, variant and options; each row keeps the engine commit it was measured
    on (the commands and commits are listed)."""

    def key(row: dict[str, Any]) -> tuple[Any, ...]:
        return (row["model"], row.get("variant"), str(row.get("options")))

    merged = dict(results[0], rows=[], any_model_rows=[])
    merged["git"] = ""
    for result in results:
        if result is not results[0]:
            merged["command"] += " && " + result["command"]
        if result["git"] not in merged["git"].split(" and "):
            merged["git"] += (" and " if merged["git"] else "") + result["git"]
        for field in ("rows", "any_model_rows"):
            fresh = [{**r, "git": r.get("git", result["git"])} for r in result.get(field, [])]
            replaced = {key(r) for r in fresh}
            kept = [r for r in merged[field] if key(r) not in replaced]
            order = [key(r) for r in merged[field]]
            merged[field] = sorted(
                kept + fresh, key=lambda r: order.index(key(r)) if key(r) in order else len(order)
            )
        seen = {*merged.get("any_model_analyzers", []), *result.get("any_model_analyzers", [])}
        # every run's columns, in the declared order (a later run may add analyzers)
        merged["any_model_analyzers"] = [a[0] for a in any_model.ANALYZERS if a[0] in seen]
        merged["analyzers"] = merged["analyzers"] or result["analyzers"]
    return merged


def _git(*args: str) -> str:
    """The stripped output of ``git <args>`` in the repository (raises on failure)."""
    return subprocess.run(
        ["git", *args], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout.strip()


def _git_state() -> str:
    """Commit of the engine the matrix was measured on (``+dirty`` for local changes)."""
    try:
        commit = _git("rev-parse", "--short", "HEAD")
        dirty = _git("status", "--porcelain", "tf_clrp")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + ("+dirty" if dirty else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--variants", default="plain,nested")
    parser.add_argument("--analyzers", default=",".join(a[0] for a in ANALYZERS))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--size", type=int, default=0, help="input height/width (default: each model's minimum)"
    )
    parser.add_argument("--json", default=str(ROOT / "benchmarks/results/coverage.json"))
    parser.add_argument("--md", default=str(ROOT / "docs/coverage.md"))
    parser.add_argument(
        "--any-models",
        default=",".join(any_model.MODELS),
        help="transformer / custom-layer rows (coverage_any_model.MODELS)",
    )
    parser.add_argument(
        "--render",
        metavar="JSON",
        nargs="+",
        help="only re-render the markdown from saved result files (several "
        "are merged, and written to --json if given)",
    )
    args = parser.parse_args()
    if args.render:
        merged = merge([json.loads(Path(p).read_text()) for p in args.render])
        if len(args.render) > 1 and args.json:
            Path(args.json).write_text(json.dumps(merged, indent=1, ensure_ascii=False) + "\n")
        Path(args.md).write_text(markdown(merged))
        print(f"wrote {args.md}")
        return
    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    tf.get_logger().setLevel("ERROR")  # one tf.function per analyzer: retracing notes
    chosen = [a for a in ANALYZERS if a[0] in args.analyzers.split(",")]
    chosen_any = list(any_model.ANALYZERS)
    engine = _git_state()
    argv = " ".join(f"'{a}'" if (" " in a or not a) else a for a in sys.argv[1:])
    rows: list[dict[str, Any]] = []
    any_rows: list[dict[str, Any]] = []
    result = {
        "command": f"python benchmarks/coverage_matrix.py {argv}".strip(),
        "git": engine,
        "keras": keras.__version__,
        "tensorflow": tf.__version__,
        "python": platform.python_version(),
        "threads": args.threads,
        "analyzers": [a[0] for a in chosen],
        "conservation_tol": CONSERVATION_TOL,
        "forward_tol": FORWARD_TOL,
        "gradient_tol": GRADIENT_TOL,
        "rows": rows,
        "any_model_analyzers": [a[0] for a in chosen_any],
        "any_model_rows": any_rows,
    }

    def save() -> None:  # after every row: a long run that is stopped keeps its rows
        if args.json:
            Path(args.json).parent.mkdir(parents=True, exist_ok=True)
            Path(args.json).write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n")
        if args.md:
            Path(args.md).write_text(markdown(result))

    for name in [n for n in args.models.split(",") if n]:
        for variant in args.variants.split(","):
            print(f"{name} ({variant})", flush=True)
            row = run_model(name, variant, chosen, size=args.size)
            rows.append({**row, "git": engine})
            failed = any(not c["ok"] for c in row.get("cells", []))
            if name in ESCAPE_HATCHES and failed:
                print(f"{name} ({variant}) with {sorted(ESCAPE_HATCHES[name])}", flush=True)
                rows.append(
                    {
                        **run_model(name, variant, chosen, ESCAPE_HATCHES[name], args.size),
                        "git": engine,
                    }
                )
            save()
    for name in [n for n in args.any_models.split(",") if n]:
        print(name, flush=True)
        any_rows.append({**any_model.run_model(name, chosen_any), "git": engine})
        save()
    save()
    print(f"wrote {args.json or '-'} and {args.md or '-'}")


if __name__ == "__main__":
    main()
