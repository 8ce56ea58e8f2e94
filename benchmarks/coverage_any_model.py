"""Coverage rows beyond keras.applications: transformers and a subclassed CNN block.

Used by ``benchmarks/coverage_matrix.py --any-models ...`` (and ``tests/test_coverage.py``).
Models, all with random weights, built offline from tiny configs:

* keras_hub ``ViTImageClassifier``, ``DeiTImageClassifier``, ``BertTextClassifier`` (biases and
  LayerNorm offsets drawn at random: keras_hub initialises them to 0, and a dropped bias must
  show in the forward check);
* a stock-Keras ViT (Conv2D patchify + two MultiHeadAttention blocks);
* a stock-Keras text classifier (Embedding(mask_zero=True) + a MultiHeadAttention block);
* a CNN with a subclassed block (Conv2D → ReLU → Conv2D, residual add, ReLU).

Each analyzer explains each sample's arg-max logit and either works — its mirrored forward
equals the model's output (max error ≤ ``FORWARD_TOL``·max|output|), the map is finite and
non-zero, and ``gradient`` equals autodiff of the model (≤ ``GRADIENT_TOL``) — or refuses
with an error naming the layer or op (by its path) it has no rule for.
"""

from __future__ import annotations

import re
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np
import tensorflow as tf

import tf_clrp
from tf_clrp import inputs

#: Mirrored forward vs the model's output, relative to its max magnitude.
FORWARD_TOL = 1e-5
#: ``gradient`` vs autodiff of the model, relative to max|∂z/∂x|.
GRADIENT_TOL = 1e-4

#: (label, registry name, options).
ANALYZERS: tuple[tuple[str, str, dict[str, Any]], ...] = (
    ("gradient", "gradient", {}),
    ("input_t_gradient", "input_t_gradient", {}),
    ("integrated_gradients", "integrated_gradients", {}),
    ("smoothgrad", "smoothgrad", {}),
    ("guided_backprop", "guided_backprop", {}),
    ("deconvnet", "deconvnet", {}),
    ("lrp.z_plus", "lrp.z_plus", {}),
    ("lrp.epsilon(0.1)", "lrp.epsilon", {"epsilon": 0.1}),
    ("lrp.epsilon_plus", "lrp.epsilon_plus", {}),
    ("attnlrp", "attnlrp", {}),
    ("attnlrp.cp", "attnlrp.cp", {}),
    ("clrp", "clrp", {}),
    ("sglrp", "sglrp", {}),
)


@dataclass(frozen=True)
class Case:
    """A model, a batch it takes, and the ``create_analyzer`` options it needs."""

    model: keras.Model
    batch: Any
    options: dict[str, Any]


def _random_biases(model: keras.Model) -> keras.Model:
    """Non-zero biases and LayerNorm offsets (keras_hub initialises them to 0), so that a
    dropped bias changes the mirrored forward."""
    rng = np.random.default_rng(26)
    for weight in model.weights:
        if weight.path.endswith(("bias", "beta")):
            weight.assign(rng.normal(0.0, 0.1, weight.shape).astype(weight.dtype))
    return model


def keras_hub_classifier(
    backbone: str, classifier: str, seed: int, num_classes: int, **config: Any
) -> keras.Model:
    """A keras_hub task model with random weights from a tiny backbone config (offline)."""
    import keras_hub

    keras.utils.set_random_seed(seed)
    body = getattr(keras_hub.models, backbone)(**config)
    return _random_biases(
        getattr(keras_hub.models, classifier)(
            backbone=body, num_classes=num_classes, preprocessor=None
        )
    )


def _images(n: int = 5, size: int = 32) -> np.ndarray:
    return np.random.default_rng(24).random((n, size, size, 3), dtype=np.float32)


def _token_batch(with_segments: bool) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(25)
    mask = np.ones((4, 8), np.int32)
    mask[0, 5:] = 0
    mask[2, 3:] = 0
    ids = rng.integers(1, 50, (4, 8)).astype(np.int32) * mask
    if not with_segments:
        return {"token_ids": ids}
    return {"token_ids": ids, "segment_ids": np.zeros((4, 8), np.int32), "padding_mask": mask}


def vit() -> Case:
    model = keras_hub_classifier(
        "ViTBackbone",
        "ViTImageClassifier",
        21,
        5,
        image_shape=(32, 32, 3),
        patch_size=8,
        num_layers=2,
        num_heads=2,
        hidden_dim=32,
        mlp_dim=64,
    )
    return Case(model, _images(), {})


def deit() -> Case:
    model = keras_hub_classifier(
        "DeiTBackbone",
        "DeiTImageClassifier",
        22,
        5,
        image_shape=(32, 32, 3),
        patch_size=8,
        num_layers=2,
        num_heads=2,
        hidden_dim=32,
        intermediate_dim=64,
    )
    return Case(model, _images(), {})


def bert() -> Case:
    model = keras_hub_classifier(
        "BertBackbone",
        "BertTextClassifier",
        23,
        3,
        vocabulary_size=50,
        num_layers=2,
        num_heads=2,
        hidden_dim=16,
        intermediate_dim=32,
        max_sequence_length=8,
    )
    return Case(model, _token_batch(True), {"input_name": "token_ids"})


def _attention_block(x: Any, heads: int, key_dim: int, hidden: int) -> Any:
    """Pre-norm transformer block of stock Keras layers."""
    width = x.shape[-1]
    attended = keras.layers.MultiHeadAttention(heads, key_dim)(
        *[keras.layers.LayerNormalization()(x)] * 2
    )
    x = keras.layers.Add()([x, attended])
    h = keras.layers.Dense(hidden, activation="gelu")(keras.layers.LayerNormalization()(x))
    return keras.layers.Add()([x, keras.layers.Dense(width)(h)])


def keras_vit() -> Case:
    keras.utils.set_random_seed(41)
    image = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(32, 8, strides=8, bias_initializer="random_normal")(image)
    x = keras.layers.Reshape((16, 32))(x)
    for _ in range(2):
        x = _attention_block(x, 2, 16, 64)
    x = keras.layers.GlobalAveragePooling1D()(keras.layers.LayerNormalization()(x))
    return Case(keras.Model(image, keras.layers.Dense(5)(x), name="keras_vit"), _images(), {})


def keras_text() -> Case:
    keras.utils.set_random_seed(42)
    ids = keras.Input((8,), dtype="int32", name="token_ids")
    x = keras.layers.Embedding(50, 16, mask_zero=True)(ids)
    x = _attention_block(x, 2, 8, 32)
    x = keras.layers.GlobalAveragePooling1D()(x)
    return Case(
        keras.Model(ids, keras.layers.Dense(3)(x), name="keras_text"),
        _token_batch(False)["token_ids"],
        {},
    )


class ResidualConvBlock(keras.layers.Layer):
    """A subclassed CNN block: Conv2D → ReLU → Conv2D, plus the input, then ReLU."""

    def __init__(self, channels: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.first = keras.layers.Conv2D(
            channels, 3, padding="same", activation="relu", bias_initializer="random_normal"
        )
        self.second = keras.layers.Conv2D(
            channels, 3, padding="same", bias_initializer="random_normal"
        )

    def call(self, x: Any) -> Any:
        return keras.ops.relu(self.second(self.first(x)) + x)


def subclassed_cnn() -> Case:
    keras.utils.set_random_seed(43)
    image = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(8, 3, activation="relu")(image)
    x = ResidualConvBlock(8, name="residual_block")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return Case(
        keras.Model(image, keras.layers.Dense(5)(x), name="subclassed_cnn"), _images(size=16), {}
    )


#: Row name -> builder.
MODELS: dict[str, Callable[[], Case]] = {
    "keras_hub ViTImageClassifier": vit,
    "keras_hub DeiTImageClassifier": deit,
    "keras_hub BertTextClassifier": bert,
    "Keras ViT (Conv2D + MultiHeadAttention)": keras_vit,
    "Keras text (Embedding + MultiHeadAttention)": keras_text,
    "CNN with a subclassed block": subclassed_cnn,
}


# ----------------------------------------------------------------------------- measuring
def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a - b)) / max(float(np.max(np.abs(b))), 1e-12))


def _explained(analyzer: Any, batch: Any) -> tuple[np.ndarray, list[np.ndarray], Any]:
    """The analyzer's input (embedded tokens for a token input), its feeds, the split."""
    split = inputs.split_batch(batch, analyzer.graph)
    x = (
        inputs.embed(analyzer.graph, split.explained)
        if analyzer.graph.embedding is not None
        else split.explained
    )
    return x, list(split.feeds), split


def autodiff_gradient(case: Case, analyzer: Any, targets: np.ndarray) -> tuple[np.ndarray, float]:
    """∂ output_target / ∂ explained input by ``tf.GradientTape`` on the user's model, and
    the scale errors are relative to (its max magnitude). For a token input: summed over the
    embedding axis (padding 0), read off the gradient of the embedding table (one row per
    token position); the scale is that of the unsummed gradient, because the sum cancels
    to ≈ 0 when a LayerNormalization follows the embedding (BERT)."""
    graph = analyzer.graph
    named = inputs.split_batch(case.batch, graph)
    if graph.embedding is None:
        if isinstance(case.batch, dict):
            x = tf.constant(case.batch[graph.explained_input])
            with tf.GradientTape() as tape:
                tape.watch(x)
                y = case.model(
                    {**{k: tf.constant(v) for k, v in case.batch.items()}, graph.explained_input: x}
                )
                score = tf.reduce_sum(tf.gather(y, targets, axis=1, batch_dims=1))
            grad = tape.gradient(score, x).numpy()
            return grad, float(np.abs(grad).max())
        x = tf.constant(case.batch)
        with tf.GradientTape() as tape:
            tape.watch(x)
            score = tf.reduce_sum(tf.gather(case.model(x), targets, axis=1, batch_dims=1))
        grad = tape.gradient(score, x).numpy()
        return grad, float(np.abs(grad).max())
    table = graph.embedding.op.embeddings
    feed = (
        {k: tf.constant(v) for k, v in case.batch.items()}
        if isinstance(case.batch, dict)
        else tf.constant(case.batch)
    )
    with tf.GradientTape() as tape:
        score = tf.reduce_sum(tf.gather(case.model(feed), targets, axis=1, batch_dims=1))
    slices = tape.gradient(score, table)
    ids = named.explained
    np.testing.assert_array_equal(slices.indices.numpy(), ids.reshape(-1))
    rows = slices.values.numpy().reshape(*ids.shape, -1)
    grad = rows.sum(-1)
    if named.token_mask is not None:
        grad = grad * named.token_mask
    return grad, float(np.abs(rows).max())


def evaluate(
    case: Case,
    label: str,
    name: str,
    options: dict[str, Any],
    targets: np.ndarray,
    expected: np.ndarray,
) -> dict[str, Any]:
    """Runs one analyzer on one model and measures it."""
    cell: dict[str, Any] = {"analyzer": label, "ok": False}
    start = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            analyzer = tf_clrp.create_analyzer(name, case.model, **case.options, **options)
            maps = analyzer.analyze(case.batch, neuron_selection=targets)
    except Exception as error:  # noqa: BLE001 - the matrix records every failure
        cell["error"] = _first_line(error)
        cell["names_layer"] = bool(re.search(r"layer '[^']+'", cell["error"]))
        return cell
    cell["ok"] = True
    cell["s_per_sample"] = round((time.perf_counter() - start) / len(targets), 4)
    x, feeds, _ = _explained(analyzer, case.batch)
    mirrored = analyzer.mirror(tf.constant(x), [tf.constant(f) for f in feeds]).numpy()
    expected = expected.reshape(len(x), -1)  # (CLRP appends virtual dual outputs)
    cell["forward_rel"] = _rel(mirrored.reshape(len(x), -1)[:, : expected.shape[1]], expected)
    cell["finite"] = bool(np.isfinite(maps).all())
    cell["nonzero"] = bool(np.abs(maps).sum() > 0)
    if label == "gradient":
        reference, scale = autodiff_gradient(case, analyzer, targets)
        cell["gradient_rel"] = float(np.max(np.abs(maps - reference)) / max(scale, 1e-12))
    return cell


def run_model(name: str, analyzers: list[tuple[str, str, dict[str, Any]]]) -> dict[str, Any]:
    """All analyzers on one model."""
    row: dict[str, Any] = {"model": name}
    try:
        case = MODELS[name]()
    except Exception as error:  # noqa: BLE001
        row["error"] = _first_line(error)
        return row
    output = case.model(case.batch).numpy()
    targets = output.reshape(len(output), -1).argmax(axis=1).astype(np.int32)
    row["options"] = sorted(case.options.items())
    row["batch"] = len(targets)
    row["max_output"] = float(np.abs(output).max())
    row["cells"] = []
    for label, analyzer_name, options in analyzers:
        cell = evaluate(case, label, analyzer_name, options, targets, output)
        row["cells"].append(cell)
        status = "ok" if cell["ok"] else cell["error"][:110]
        print(
            f"  {label:22s} {status}  fwd={cell.get('forward_rel', float('nan')):.1e}", flush=True
        )
    keras.backend.clear_session()
    return row


# ----------------------------------------------------------------------------- markdown
def _refused_at(error: str) -> str:
    """'op (group)' from an error naming a layer path and possibly its group."""
    layer = re.search(r"layer '([^']+)'", error)
    group = re.search(r"group '([^']+)'", error)
    where = _unnumbered(layer.group(1).rsplit("/", 1)[-1]) if layer else error.split(":")[0]
    return f"{where} ({group.group(1)})" if group else where


def _unnumbered(text: str) -> str:
    """Without Keras' per-call name suffixes (``einsum_56`` -> ``einsum``) and composite
    names, so that one refusal reads the same for every analyzer."""
    text = re.sub(r"^([A-Za-z_]*?)_\d+$", r"\1", text)  # an op name alone
    text = re.sub(r"(layer '(?:[^'/]*/)*[^'/]*?)_\d+'", r"\1'", text, count=1)  # its path
    return re.sub(r"composite '[^']+'", "the composite", text)


def cell_problems(
    cell: dict[str, Any], forward_tol: float = FORWARD_TOL, gradient_tol: float = GRADIENT_TOL
) -> list[str]:
    """Short notes on what a run cell got wrong: forward error, non-finite or all-zero maps,
    gradient error (empty when all is well)."""
    bad = []
    if cell["forward_rel"] > forward_tol:
        bad.append(f"fwd {cell['forward_rel']:.0e}")
    if not cell["finite"]:
        bad.append("non-finite")
    if not cell["nonzero"]:
        bad.append("all-zero")
    if cell.get("gradient_rel", 0.0) > gradient_tol:
        bad.append(f"grad {cell['gradient_rel']:.0e}")
    return bad


def cell_text(cell: dict[str, Any]) -> str:
    if not cell["ok"]:
        return "✗ " + _refused_at(cell["error"])
    bad = cell_problems(cell)
    return "✓" if not bad else "⚠ " + ", ".join(bad)


def markdown(rows: list[dict[str, Any]], labels: list[str]) -> list[str]:
    """The report's section on these rows."""
    lines = [
        "",
        "## Transformers and custom layers",
        "",
        "Built offline with random weights from tiny configs (`benchmarks/"
        "coverage_any_model.py`): keras_hub ViT/DeiT/BERT classifiers, a stock-Keras ViT",
        "(Conv2D patchify + MultiHeadAttention), a stock-Keras text classifier (Embedding with",
        '`mask_zero=True` + MultiHeadAttention; BERT explains `input_name="token_ids"`, the',
        "other inputs fed through) and a CNN with a subclassed block. Each sample's arg-max",
        "output is explained (batch in the table). ✓: the mirrored forward equals the",
        f"model's output (≤ {FORWARD_TOL:g}·max|output|), the map is finite and non-zero, and",
        f"`gradient` equals autodiff (≤ {GRADIENT_TOL:g}·max|∂z/∂x|; for token inputs the",
        "gradient at the embedding output summed over the embedding axis, error relative",
        "to the unsummed gradient: the sum cancels after a LayerNormalization). ✗ refused:",
        "the op (group) the error names, by its last path segment; the full first lines are",
        "below. `bilinear` (products of two activations: attention scores, attention",
        "weights × values) has no rule in the `lrp.*` presets (pass `layer_rules={...}` to",
        "choose one); `attnlrp`, `attnlrp.cp` and, by default on these models, `clrp` and",
        "`sglrp` use AttnLRP's rules there ([transformers](transformers.md)).",
        "",
        "| model | batch | max\\|output\\| | " + " | ".join(labels) + " |",
        "|---|---|---|" + "---|" * len(labels),
    ]
    errors: dict[str, list[str]] = {}
    for row in rows:
        if "cells" not in row:
            lines.append(f"| {row['model']} | | | " + " | ".join(["✗ build"] * len(labels)) + " |")
            errors.setdefault(row["error"], []).append(row["model"])
            continue
        cells = {c["analyzer"]: c for c in row["cells"]}
        texts = [cell_text(cells[label]) if label in cells else "" for label in labels]
        lines.append(
            f"| {row['model']} | {row['batch']} | {row['max_output']:.1e} | "
            + " | ".join(texts)
            + " |"
        )
        for cell in row["cells"]:
            if not cell["ok"]:
                errors.setdefault(_unnumbered(cell["error"]), []).append(
                    f"{row['model']} ({cell['analyzer']})"
                )
    lines += ["", "Errors:", ""]
    if not errors:
        lines.append("None.")
    for error, where in errors.items():
        shown = ", ".join(where[:4]) + (f" and {len(where) - 4} more" if len(where) > 4 else "")
        lines.append(f"* `{error[:400]}` — {shown}")
    return lines
