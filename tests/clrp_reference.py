"""A float64 numpy re-implementation of the CLRP authors' rules and of SGLRP, for tests.

Written from the paper, the authors' code as described in
``tests/references/AUTHORS_CLRP_NOTES.md`` and Iwana et al.'s formula (docs/clrp.md); it
shares no code with tf_clrp. Supported layers: 'same'-padded stride-1 convolutions, ReLU,
2×2 max-pooling, Flatten and Dense, channels last. Rules: z^B (no bias, 1e-9 added to the
denominator) on the first layer, z⁺ (no bias, 1e-9 added) on every other Dense/Conv,
winner-take-all max-pooling (ties split, as the authors do), relevance through ReLU and
Flatten unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

STABILISER = 1e-9


@dataclass(frozen=True)
class Layer:
    """One layer: kind in {"conv", "dense", "relu", "pool", "flatten"}, weights (float64)."""

    kind: str
    kernel: np.ndarray | None = None
    bias: np.ndarray | None = None


def layers_of(model: keras.Model) -> list[Layer]:
    """The reference layers of a Keras model built from Conv2D/Dense/ReLU/MaxPool/Flatten.

    A fused ReLU becomes its own layer; anything else is refused (so the reference never
    silently skips a layer).
    """
    out: list[Layer] = []
    for layer in model.layers:
        name = type(layer).__name__
        if name == "InputLayer":
            continue
        if name in ("Conv2D", "Dense"):
            assert name == "Dense" or (layer.padding == "same" and tuple(layer.strides) == (1, 1))
            bias = layer.bias.numpy().astype(np.float64) if layer.use_bias else None
            out.append(
                Layer(
                    "conv" if name == "Conv2D" else "dense",
                    layer.kernel.numpy().astype(np.float64),
                    bias,
                )
            )
            activation = layer.activation.__name__
            assert activation in ("relu", "linear"), activation
            if activation == "relu":
                out.append(Layer("relu"))
        elif name == "ReLU":
            out.append(Layer("relu"))
        elif name == "MaxPooling2D":
            assert tuple(layer.pool_size) == (2, 2) and tuple(layer.strides) == (2, 2)
            out.append(Layer("pool"))
        elif name == "Flatten":
            out.append(Layer("flatten"))
        else:
            raise AssertionError(f"the reference has no rule for {name}")
    return out


# ----------------------------------------------------------------------------- linear maps
def _pads(kernel: np.ndarray) -> tuple[tuple[int, int], tuple[int, int]]:
    kh, kw = kernel.shape[:2]
    return ((kh - 1) // 2, kh - 1 - (kh - 1) // 2), ((kw - 1) // 2, kw - 1 - (kw - 1) // 2)


def conv(a: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """'same' stride-1 convolution (TF's padding), no bias: (B, H, W, C) -> (B, H, W, O)."""
    ph, pw = _pads(kernel)
    padded = np.pad(a, ((0, 0), ph, pw, (0, 0)))
    patches = sliding_window_view(padded, kernel.shape[:2], axis=(1, 2))  # B,H,W,C,kh,kw
    return np.einsum("bhwcij,ijco->bhwo", patches, kernel)


def conv_transposed(s: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """The transpose of ``conv`` applied to ``s`` (B, H, W, O) -> (B, H, W, C)."""
    (top, _), (left, _) = _pads(kernel)
    kh, kw = kernel.shape[:2]
    b, h, w, _ = s.shape
    out = np.zeros((b, h + kh - 1, w + kw - 1, kernel.shape[2]))
    for i in range(kh):
        for j in range(kw):
            out[:, i : i + h, j : j + w, :] += s @ kernel[i, j].T
    return out[:, top : top + h, left : left + w, :]


def linear(layer: Layer, a: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """The layer's product with ``kernel`` (no bias)."""
    return conv(a, kernel) if layer.kind == "conv" else a @ kernel


def linear_transposed(layer: Layer, s: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """The transposed product."""
    return conv_transposed(s, kernel) if layer.kind == "conv" else s @ kernel.T


# ----------------------------------------------------------------------------- forward
def forward(layers: list[Layer], x: np.ndarray) -> list[np.ndarray]:
    """Activations: [input, output of layer 0, output of layer 1, ...] (float64)."""
    values = [x.astype(np.float64)]
    for layer in layers:
        a = values[-1]
        if layer.kind in ("conv", "dense"):
            z = linear(layer, a, layer.kernel)
            values.append(z if layer.bias is None else z + layer.bias)
        elif layer.kind == "relu":
            values.append(np.maximum(a, 0.0))
        elif layer.kind == "pool":
            b, h, w, c = a.shape
            values.append(a.reshape(b, h // 2, 2, w // 2, 2, c).max(axis=(2, 4)))
        else:
            values.append(a.reshape(len(a), -1))
    return values


# ----------------------------------------------------------------------------- rules
def z_plus(layer: Layer, a: np.ndarray, kernel: np.ndarray, r: np.ndarray) -> np.ndarray:
    """z⁺ without bias: R_in = a ⊙ Vᵀ(R / (a·V + 1e-9)), V = max(0, W)."""
    v = np.maximum(kernel, 0.0)
    return a * linear_transposed(layer, r / (linear(layer, a, v) + STABILISER), v)


def z_box(
    layer: Layer,
    x: np.ndarray,
    kernel: np.ndarray,
    r: np.ndarray,
    low: np.ndarray,
    high: np.ndarray,
) -> np.ndarray:
    """z^B without bias: c = x·w − l·w⁺ − h·w⁻ (l, h zero-padded like x)."""
    wp, wn = np.maximum(kernel, 0.0), np.minimum(kernel, 0.0)
    z = linear(layer, x, kernel) - linear(layer, low, wp) - linear(layer, high, wn)
    s = r / (z + STABILISER)
    return (
        x * linear_transposed(layer, s, kernel)
        - low * linear_transposed(layer, s, wp)
        - high * linear_transposed(layer, s, wn)
    )


def max_pool_relevance(a: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Winner-take-all 2×2 max-pooling; ties split equally (the authors' maxPool_relprop)."""
    b, h, w, c = a.shape
    windows = a.reshape(b, h // 2, 2, w // 2, 2, c)
    winners = windows == windows.max(axis=(2, 4), keepdims=True)
    share = winners / winners.sum(axis=(2, 4), keepdims=True)
    return (share * r[:, :, None, :, None, :]).reshape(a.shape)


def relevance(
    layers: list[Layer],
    x: np.ndarray,
    seed: np.ndarray,
    low: np.ndarray,
    high: np.ndarray,
    negate_head: bool = False,
) -> np.ndarray:
    """The authors' LRP of ``seed`` (flat, at the last layer's output) down to the input.

    Args:
        layers: The network.
        x: Input batch.
        seed: (B, n) relevance at the flattened output.
        low: Lowest input values, x's shape (the z^B bounds).
        high: Highest input values.
        negate_head: Use the last layer's weights negated (the CLRP2 / "negated" dual).
    """
    values = forward(layers, x)
    r = seed.reshape(values[-1].shape).astype(np.float64)
    first = next(i for i, layer in enumerate(layers) if layer.kernel is not None)
    for i in range(len(layers) - 1, -1, -1):
        layer, a = layers[i], values[i]
        if layer.kind in ("conv", "dense"):
            kernel = -layer.kernel if negate_head and i == len(layers) - 1 else layer.kernel
            r = z_box(layer, a, kernel, r, low, high) if i == first else z_plus(layer, a, kernel, r)
        elif layer.kind == "pool":
            r = max_pool_relevance(a, r)
        elif layer.kind == "flatten":
            r = r.reshape(a.shape)
    return r


# ----------------------------------------------------------------------------- methods
def _per_sample_sum(a: np.ndarray) -> np.ndarray:
    return a.reshape(len(a), -1).sum(axis=1).reshape((-1,) + (1,) * (a.ndim - 1))


def normalised(a: np.ndarray) -> np.ndarray:
    """a / Σa per sample (0 where the sum is 0)."""
    total = _per_sample_sum(a)
    return np.divide(a, total, out=np.zeros_like(a), where=total != 0)


def logits(layers: list[Layer], x: np.ndarray) -> np.ndarray:
    """Flattened output (B, n), float64."""
    out = forward(layers, x)[-1]
    return out.reshape(len(out), -1)


def clrp(
    layers: list[Layer],
    x: np.ndarray,
    targets: list[int],
    contrast: str | list[int],
    low: np.ndarray,
    high: np.ndarray,
) -> dict[str, np.ndarray]:
    """CLRP parts: target, dual, difference, contrastive (the paper's and authors' seeds).

    Args:
        layers: The network.
        x: Input batch.
        targets: One flat output index per sample.
        contrast: "others" (|z_k| on every k ≠ t), "others_uniform" (|z_t|/(n−1) on every
            k ≠ t), "negated" (|z_t| on t with the head's weights negated) or one rival
            index per sample (|z_k| on k).
        low: Lowest input values (x's shape).
        high: Highest input values.
    """
    z = np.abs(logits(layers, x))
    rows = np.arange(len(x))
    target_seed = np.zeros_like(z)
    target_seed[rows, targets] = z[rows, targets]
    others = z.copy()
    others[rows, targets] = 0.0
    if contrast == "others":
        dual_seed = others
    elif contrast == "others_uniform":
        dual_seed = (others > -1) * (z[rows, targets] / (z.shape[1] - 1))[:, None]
        dual_seed[rows, targets] = 0.0
    elif contrast == "negated":
        dual_seed = target_seed
    else:
        dual_seed = np.zeros_like(z)
        dual_seed[rows, contrast] = z[rows, contrast]
    target = relevance(layers, x, target_seed, low, high)
    dual = relevance(layers, x, dual_seed, low, high, negate_head=contrast == "negated")
    difference = normalised(target) - normalised(dual)
    return {
        "target": target,
        "dual": dual,
        "difference": difference,
        "contrastive": np.maximum(difference, 0.0),
    }


def sglrp(
    layers: list[Layer], x: np.ndarray, targets: list[int], low: np.ndarray, high: np.ndarray
) -> dict[str, np.ndarray]:
    """SGLRP (Iwana, Kuroki & Uchida 2019): seeds p_t(1 − p_t) on t and p_t·p_k on k ≠ t,
    map R_t − R_d·ΣR_t/ΣR_d, with p = softmax(z) in float64."""
    z = logits(layers, x)
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    rows = np.arange(len(x))
    p_t = p[rows, targets]
    rest = p.copy()
    rest[rows, targets] = 0.0
    target_seed = np.zeros_like(p)
    target_seed[rows, targets] = p_t * rest.sum(axis=1)  # 1 − p_t without cancellation
    dual_seed = rest * p_t[:, None]
    target = relevance(layers, x, target_seed, low, high)
    dual = relevance(layers, x, dual_seed, low, high)
    difference = target - dual * _per_sample_sum(target) / _per_sample_sum(dual)
    return {
        "target": target,
        "dual": dual,
        "difference": difference,
        "contrastive": np.maximum(difference, 0.0),
    }
