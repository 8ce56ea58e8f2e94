"""Relevance maps as colour images: channel reduction, normalisation, colormaps, overlays."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

#: Channel reductions accepted by :func:`reduce_channels` (hyphens are accepted too).
REDUCTIONS = ("sum", "abs_sum", "max_norm", "l2")
#: Default colormaps: diverging for signed maps, sequential for non-negative maps.
DEFAULT_SIGNED_CMAP = "bwr"
DEFAULT_UNSIGNED_CMAP = "hot"
#: Colormaps defined here (both backends); any matplotlib / OpenCV name works as well.
CUSTOM_CMAPS = ("bwr", "coldnhot", "seismic_light")
BACKENDS = ("matplotlib", "opencv")
#: Default percentile of |R| that maps to full colour (values beyond are clipped).
DEFAULT_PERCENTILE = 99.5
#: Negative values smaller than this fraction of max |R| do not make a map "signed".
SIGN_TOLERANCE = 1e-3

# Control points (position in [0, 1], RGB in [0, 1]) of the colormaps defined here.
_CUSTOM_POINTS: dict[str, list[tuple[float, tuple[float, float, float]]]] = {
    # blue - white - red, like matplotlib's "bwr" (zero is white).
    "bwr": [(0.0, (0.0, 0.0, 1.0)), (0.5, (1.0, 1.0, 1.0)), (1.0, (1.0, 0.0, 0.0))],
    # cyan - blue - black - red - yellow: zero is black, magnitude is brightness.
    "coldnhot": [
        (0.0, (0.0, 1.0, 1.0)),
        (0.25, (0.0, 0.0, 1.0)),
        (0.5, (0.0, 0.0, 0.0)),
        (0.75, (1.0, 0.0, 0.0)),
        (1.0, (1.0, 1.0, 0.0)),
    ],
    # a softer blue - white - red for overlays.
    "seismic_light": [(0.0, (0.1, 0.2, 0.8)), (0.5, (1.0, 1.0, 1.0)), (1.0, (0.85, 0.1, 0.1))],
}


# ----------------------------------------------------------------------------- helpers
def _as_float(relevance: Any, what: str = "relevance") -> np.ndarray:
    if hasattr(relevance, "numpy") and not isinstance(relevance, np.ndarray):
        relevance = relevance.numpy()
    array = np.asarray(relevance)
    if array.dtype.kind not in "fiub":
        raise TypeError(f"{what} must be a numeric array, got dtype {array.dtype}")
    array = array.astype(np.float32, copy=False)
    if not np.all(np.isfinite(array)):
        bad = int((~np.isfinite(array)).sum())
        raise ValueError(f"{what} of shape {array.shape} contains {bad} NaN/Inf value(s)")
    return array


def _reduction_name(reduce: str) -> str:
    key = str(reduce).lower().replace("-", "_")
    if key not in REDUCTIONS:
        raise ValueError(f"unknown channel reduction {reduce!r}; use one of {REDUCTIONS}")
    return key


# ----------------------------------------------------------------------------- reduce
def reduce_channels(relevance: Any, reduce: str = "sum", axis: int = -1) -> np.ndarray:
    """Collapses the channel axis of relevance maps.

    Args:
        relevance: Any array with a channel axis, e.g. (H, W, C) or (N, H, W, C).
        reduce: "sum" (signed), "abs_sum" (Σ|R|), "max_norm" (max |R| over channels) or
            "l2" (√ΣR²); the last three give non-negative maps.
        axis: The channel axis.

    Returns:
        float32 array without ``axis``.
    """
    key = _reduction_name(reduce)
    array = _as_float(relevance)
    if array.ndim == 0:
        raise ValueError("reduce_channels needs an array with a channel axis, got a scalar")
    if key == "sum":
        return array.sum(axis=axis)
    if key == "abs_sum":
        return np.abs(array).sum(axis=axis)
    if key == "max_norm":
        return np.abs(array).max(axis=axis)
    return np.sqrt(np.square(array).sum(axis=axis))


def _single_map(relevance: Any, reduce: str, func: str) -> np.ndarray:
    """(H, W), (H, W, C) or (1, H, W[, C]) → (H, W)."""
    array = _as_float(relevance)
    original = array.shape
    if array.ndim == 4 and array.shape[0] == 1:
        array = array[0]
    if array.ndim == 3:
        array = reduce_channels(array, reduce, axis=-1)
    if array.ndim != 2:
        raise ValueError(
            f"{func}() takes one map of shape (H, W) or (H, W, C) (channels last); got shape "
            f"{original}. For a batch use heatmaps() or index one sample."
        )
    if min(array.shape) == 0:
        raise ValueError(f"{func}() got an empty map of shape {original}")
    return array


# ----------------------------------------------------------------------------- normalise
def is_signed(values: Any) -> bool:
    """Whether a map counts as signed: its most negative value exceeds ``SIGN_TOLERANCE``
    (0.1 %) of max |R| in magnitude. Smaller negatives are numerical noise of non-negative
    rules (z⁺, CLRP) and would only flip the colormap; they are clipped to 0 for display."""
    array = _as_float(values)
    if array.size == 0:
        return False
    return bool(array.min() < -SIGN_TOLERANCE * float(np.abs(array).max()))


def normalize(
    values: Any, signed: bool | None = None, percentile: float | None = DEFAULT_PERCENTILE
) -> np.ndarray:
    """Scales one map for display.

    Signed maps are divided by a scale ``s`` of |R| (symmetric: zero stays zero) and clipped to
    [-1, 1]; non-negative maps are divided by ``s`` and clipped to [0, 1]. ``s`` is the given
    percentile of |R| (falling back to max |R| when that percentile is 0, as for very sparse
    maps); ``percentile=None`` or 100 uses max |R|. An all-zero map stays all zero.

    Args:
        values: One map (any shape; the whole array shares one scale).
        signed: True: [-1, 1] output; False: [0, 1] (negatives clip to 0); None: see
            :func:`is_signed`.
        percentile: Percentile of |R| that maps to full colour.

    Returns:
        float32 array of the same shape.
    """
    array = _as_float(values)
    if signed is None:
        signed = is_signed(array)
    if percentile is not None and not 0 < float(percentile) <= 100:
        raise ValueError(f"percentile must be in (0, 100] or None, got {percentile}")
    magnitude = np.abs(array)
    peak = float(magnitude.max()) if array.size else 0.0
    scale = peak
    if percentile is not None and float(percentile) < 100 and array.size:
        scale = float(np.percentile(magnitude, float(percentile)))
        if scale <= 0.0:
            scale = peak
    if scale <= 0.0:
        return np.zeros_like(array)
    low = -1.0 if signed else 0.0
    return np.clip(array / scale, low, 1.0).astype(np.float32)


# ----------------------------------------------------------------------------- colormaps
def _custom_lut(name: str) -> np.ndarray:
    points = _CUSTOM_POINTS[name]
    positions = np.array([p for p, _ in points])
    colors = np.array([c for _, c in points])
    grid = np.linspace(0.0, 1.0, 256)
    lut = np.stack([np.interp(grid, positions, colors[:, k]) for k in range(3)], axis=1)
    return np.round(lut * 255).astype(np.uint8)


def _opencv_lut(name: str) -> np.ndarray:
    const = getattr(cv2, f"COLORMAP_{name.upper()}", None)
    if const is None:
        valid = sorted(n[len("COLORMAP_") :].lower() for n in dir(cv2) if n.startswith("COLORMAP_"))
        raise ValueError(
            f"unknown colormap {name!r} for the OpenCV backend; use one of "
            f"{', '.join(sorted(set(valid) | set(CUSTOM_CMAPS)))}"
        )
    ramp = np.arange(256, dtype=np.uint8).reshape(256, 1)
    bgr = cv2.applyColorMap(ramp, const).reshape(256, 3)
    return np.ascontiguousarray(bgr[:, ::-1])


def _matplotlib_lut(name: str) -> np.ndarray:
    import matplotlib

    try:
        cmap = matplotlib.colormaps[name]
    except KeyError:
        raise ValueError(
            f"unknown colormap {name!r}; use a matplotlib colormap name (e.g. 'bwr', "
            f"'seismic', 'coolwarm', 'hot', 'inferno', 'viridis') or one of {CUSTOM_CMAPS}"
        ) from None
    rgba = cmap(np.linspace(0.0, 1.0, 256))
    return np.round(rgba[:, :3] * 255).astype(np.uint8)


def colormap_lut(cmap: str, backend: str = "matplotlib") -> np.ndarray:
    """The 256-entry RGB lookup table of a colormap.

    Args:
        cmap: "bwr", "coldnhot", "seismic_light" (defined here, identical on both backends),
            any matplotlib name (matplotlib backend) or OpenCV ``COLORMAP_*`` name in lower
            case (opencv backend: "hot", "inferno", "jet", "turbo", ...).
        backend: "matplotlib" or "opencv".

    Returns:
        uint8 array (256, 3), RGB.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; use one of {BACKENDS}")
    if cmap in _CUSTOM_POINTS and (backend == "opencv" or cmap != "bwr"):
        return _custom_lut(cmap)
    return _opencv_lut(cmap) if backend == "opencv" else _matplotlib_lut(cmap)


def colorize(
    normalized: Any, signed: bool, cmap: str | None = None, backend: str = "matplotlib"
) -> np.ndarray:
    """Maps a normalised map to colours.

    Args:
        normalized: (H, W) values in [-1, 1] (signed) or [0, 1] (unsigned), see :func:`normalize`.
        signed: Whether the values are signed (zero goes to the colormap's centre).
        cmap: Colormap name; None: "bwr" for signed, "hot" for unsigned maps.
        backend: "matplotlib" or "opencv" (``cv2.applyColorMap``).

    Returns:
        uint8 RGB image (H, W, 3).
    """
    values = _as_float(normalized, "normalized map")
    if values.ndim != 2:
        raise ValueError(f"colorize() takes an (H, W) map, got shape {values.shape}")
    cmap = cmap or (DEFAULT_SIGNED_CMAP if signed else DEFAULT_UNSIGNED_CMAP)
    unit = (values + 1.0) / 2.0 if signed else values
    index = np.round(np.clip(unit, 0.0, 1.0) * 255.0).astype(np.uint8)
    if backend == "opencv" and cmap not in _CUSTOM_POINTS:
        const = getattr(cv2, f"COLORMAP_{cmap.upper()}", None)
        if const is not None:
            return cv2.applyColorMap(index, const)[..., ::-1].copy()
    lut = colormap_lut(cmap, backend)
    if backend == "opencv":
        user = np.ascontiguousarray(lut[:, ::-1].reshape(256, 1, 3))
        return cv2.applyColorMap(index, user)[..., ::-1].copy()
    return lut[index]


# ----------------------------------------------------------------------------- heatmaps
def heatmap(
    relevance: Any,
    *,
    reduce: str = "sum",
    signed: bool | None = None,
    cmap: str | None = None,
    percentile: float | None = DEFAULT_PERCENTILE,
    backend: str = "matplotlib",
    size: tuple[int, int] | None = None,
) -> np.ndarray:
    """One relevance map as a colour image.

    Args:
        relevance: (H, W), (H, W, C) channels last, or a batch of one (1, H, W[, C]).
        reduce: Channel reduction, see :func:`reduce_channels`.
        signed: Force a diverging (True) or sequential (False) colormap; None: diverging
            iff the reduced map has negative values beyond 0.1 % of max |R| (:func:`is_signed`).
        cmap: Colormap name (None: "bwr" signed / "hot" unsigned).
        percentile: Percentile of |R| that gets full colour (None: max |R|).
        backend: "matplotlib" or "opencv".
        size: Optional output (height, width); the map is resized before colouring.

    Returns:
        uint8 RGB image (H, W, 3).
    """
    array = _single_map(relevance, reduce, "heatmap")
    if size is not None:
        height, width = int(size[0]), int(size[1])
        if height <= 0 or width <= 0:
            raise ValueError(f"size must be positive (height, width), got {size}")
        if (height, width) != array.shape:
            array = cv2.resize(array, (width, height), interpolation=cv2.INTER_LINEAR)
    if signed is None:
        signed = is_signed(array)
    return colorize(normalize(array, signed, percentile), signed, cmap, backend)


def heatmaps(relevances: Any, **kwargs: Any) -> np.ndarray:
    """A batch of relevance maps as colour images.

    Args:
        relevances: (N, H, W) or (N, H, W, C) channels last.
        **kwargs: Options of :func:`heatmap` (each map is normalised on its own).

    Returns:
        uint8 array (N, H, W, 3).
    """
    array = _as_float(relevances)
    if array.ndim not in (3, 4):
        raise ValueError(
            f"heatmaps() takes a batch (N, H, W) or (N, H, W, C); got shape {array.shape}"
        )
    if array.ndim == 3:
        array = array[..., None]
    return (
        np.stack([heatmap(a, **kwargs) for a in array])
        if len(array)
        else np.zeros((0, *array.shape[1:3], 3), np.uint8)
    )


def to_rgb_uint8(image: Any) -> np.ndarray:
    """Any image as displayable uint8 RGB (H, W, 3).

    uint8 is kept; other values in [0, 1] are scaled by 255, values in [0, 255] are kept,
    anything else (e.g. preprocessed, zero-centred input) is min-max scaled. Grayscale
    (H, W) or (H, W, 1) is repeated to three channels; a fourth (alpha) channel is dropped.

    Args:
        image: (H, W), (H, W, 1), (H, W, 3) or (H, W, 4).

    Returns:
        uint8 array (H, W, 3).
    """
    array = np.asarray(image)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=-1)
    if array.ndim != 3 or array.shape[-1] not in (3, 4):
        raise ValueError(
            f"expected an image (H, W), (H, W, 1), (H, W, 3) or (H, W, 4); got shape "
            f"{np.shape(image)}"
        )
    array = array[..., :3]
    if array.dtype == np.uint8:
        return np.ascontiguousarray(array)
    kind = array.dtype.kind
    values = _as_float(array, "image")
    low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
    if kind == "b" or (kind == "f" and low >= 0.0 and high <= 1.0):
        values = values * 255.0
    elif not (low >= 0.0 and high <= 255.0):
        values = (values - low) / (high - low) * 255.0 if high > low else np.zeros_like(values)
    return np.round(np.clip(values, 0, 255)).astype(np.uint8)


def overlay(
    image: Any,
    relevance: Any,
    alpha: float = 0.5,
    *,
    grayscale: bool = False,
    **heatmap_kwargs: Any,
) -> np.ndarray:
    """A heatmap blended over an image: ``(1 - alpha) * image + alpha * heatmap``.

    Args:
        image: The image (see :func:`to_rgb_uint8` for accepted shapes and ranges).
        relevance: Its relevance map, (H, W) or (H, W, C); resized to the image if needed.
        alpha: Heatmap weight in [0, 1].
        grayscale: Show the image in grayscale under the heatmap (often easier to read).
        **heatmap_kwargs: Options of :func:`heatmap` (reduce, signed, cmap, percentile, backend).

    Returns:
        uint8 RGB image with the image's height and width.
    """
    if not 0.0 <= float(alpha) <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    rgb = to_rgb_uint8(image)
    if grayscale:
        gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        rgb = np.repeat(gray[..., None], 3, axis=-1)
    heat = heatmap(relevance, size=rgb.shape[:2], **heatmap_kwargs)
    blended = (1.0 - alpha) * rgb.astype(np.float32) + alpha * heat.astype(np.float32)
    return np.round(np.clip(blended, 0, 255)).astype(np.uint8)
