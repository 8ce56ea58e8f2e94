"""Relevance maps as pictures: channel reduction, normalisation, colormaps, grids, PNG files.

Everything works on numpy arrays and returns uint8 RGB images or matplotlib Figures; nothing
touches pyplot's global state, so it is safe in callbacks, scripts and headless servers.

* :func:`reduce_channels` - (…, H, W, C) → (…, H, W) by "sum", "abs_sum", "max_norm" or "l2".
* :func:`normalize` - signed maps to [-1, 1] (symmetric around 0 by max/percentile |R|),
  non-negative maps to [0, 1].
* :func:`heatmap` / :func:`heatmaps` - one map / a batch → uint8 RGB, diverging colormap
  ("bwr", "coldnhot", …) for signed maps, sequential ("hot", "inferno", …) otherwise,
  rendered with matplotlib or OpenCV.
* :func:`overlay` - heatmap blended over an image.
* :func:`comparison_grid` - rows = samples, columns = image + one per method (matplotlib).
* :func:`grid_image` - the same grid drawn directly with numpy/OpenCV (fast, for callbacks).
* :func:`save_png` - atomic PNG writing that never overwrites unless asked.
"""

from __future__ import annotations

import io
import os
import uuid
from collections.abc import Mapping, Sequence
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
    "coldnhot": [(0.0, (0.0, 1.0, 1.0)), (0.25, (0.0, 0.0, 1.0)), (0.5, (0.0, 0.0, 0.0)),
                 (0.75, (1.0, 0.0, 0.0)), (1.0, (1.0, 1.0, 0.0))],
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


def normalize(values: Any, signed: bool | None = None,
              percentile: float | None = DEFAULT_PERCENTILE) -> np.ndarray:
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
        valid = sorted(n[len("COLORMAP_"):].lower() for n in dir(cv2) if n.startswith("COLORMAP_"))
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


def colorize(normalized: Any, signed: bool, cmap: str | None = None,
             backend: str = "matplotlib") -> np.ndarray:
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
def heatmap(relevance: Any, *, reduce: str = "sum", signed: bool | None = None,
            cmap: str | None = None, percentile: float | None = DEFAULT_PERCENTILE,
            backend: str = "matplotlib", size: tuple[int, int] | None = None) -> np.ndarray:
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
            f"heatmaps() takes a batch (N, H, W) or (N, H, W, C); got shape {array.shape}")
    if array.ndim == 3:
        array = array[..., None]
    return np.stack([heatmap(a, **kwargs) for a in array]) if len(array) else np.zeros(
        (0, *array.shape[1:3], 3), np.uint8)


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
            f"{np.shape(image)}")
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


def overlay(image: Any, relevance: Any, alpha: float = 0.5, *, grayscale: bool = False,
            **heatmap_kwargs: Any) -> np.ndarray:
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


# ----------------------------------------------------------------------------- grid
def _image_batch(images: Any, n_maps: int | None) -> list[np.ndarray]:
    if isinstance(images, (list, tuple)):
        return [np.asarray(i) for i in images]
    array = np.asarray(images.numpy() if hasattr(images, "numpy") else images)
    single = array.ndim == 2 or (array.ndim == 3 and array.shape[-1] in (3, 4)
                                 and n_maps == 1 and array.shape[0] != 1)
    if single:
        array = array[None]
    if array.ndim not in (3, 4):
        raise ValueError(
            f"images must be a batch (N, H, W[, C]) or a list of images; got shape {array.shape}")
    return list(array)


#: Footnote of figures that show ΣR: why the sums of different methods differ so much.
SUM_NOTE = ("ΣR = sum of the map. Gradient-type maps (gradient, Guided Backprop, DeConvNet) "
            "are not relevance: their sum has no meaning and scales with the input size. "
            "LRP maps sum to the explained logit minus what biases, ε and the input-layer "
            "rule absorb, which in deep BatchNorm networks can be most of it. CLRP is the "
            "positive part of the difference of two maps that each sum to 1, so its sum lies "
            "between 0 and about 1.")


def scale_label(percentile: float | None = DEFAULT_PERCENTILE) -> str:
    """States the colour scale s of maps normalised by :func:`normalize`.

    Args:
        percentile: The normalisation percentile (None: max |R|).

    Returns:
        e.g. "s = 99.5th percentile of |R|, per map".
    """
    which = ("max |R|" if percentile is None or float(percentile) >= 100
             else f"{float(percentile):g}th percentile of |R|")
    return f"s = {which}, per map"


def column_is_signed(maps: Any, reduce: str = "sum") -> bool:
    """Whether a batch of maps should share a diverging colormap (any map is signed).

    Args:
        maps: (N, H, W) or (N, H, W, C) maps.
        reduce: Channel reduction applied to (N, H, W, C) maps.

    Returns:
        True if :func:`is_signed` holds for at least one reduced map.
    """
    array = _as_float(maps)
    if array.ndim == 4:
        array = reduce_channels(array, reduce)
    return any(is_signed(m) for m in array)


def draw_colorbar(fig: Any, cax: Any, *, signed: bool, cmap: str | None = None,
                  backend: str = "matplotlib", percentile: float | None = DEFAULT_PERCENTILE,
                  title: str | None = None, fontsize: float = 7) -> Any:
    """Draws the horizontal colour bar of normalised maps into ``cax``.

    The bar uses exactly the lookup table the heatmaps use (:func:`colormap_lut`); its ticks
    are −s, 0, +s (signed) or 0, s (non-negative) and its label states s
    (:func:`scale_label`), optionally after ``title``.

    Args:
        fig: The matplotlib Figure.
        cax: The axes to fill.
        signed: Diverging (True) or sequential (False).
        cmap: Colormap name (None: the default for ``signed``).
        backend: Colormap backend, as for :func:`heatmap`.
        percentile: The normalisation percentile, for the label.
        title: Optional text before the scale (e.g. the method family).
        fontsize: Font size of ticks and label.

    Returns:
        The matplotlib Colorbar.
    """
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import ListedColormap, Normalize

    name = cmap or (DEFAULT_SIGNED_CMAP if signed else DEFAULT_UNSIGNED_CMAP)
    colors = ListedColormap(colormap_lut(name, backend) / 255.0)
    low = -1.0 if signed else 0.0
    bar = fig.colorbar(ScalarMappable(Normalize(low, 1.0), colors), cax=cax,
                       orientation="horizontal")
    ticks = [-1.0, 0.0, 1.0] if signed else [0.0, 1.0]
    bar.set_ticks(ticks, labels=["−s", "0", "+s"] if signed else ["0", "s"])
    bar.ax.tick_params(labelsize=fontsize, length=2, pad=1)
    text = scale_label(percentile)
    bar.set_label(f"{title}; {text}" if title else text, fontsize=fontsize, labelpad=2)
    return bar


def comparison_grid(images: Any, maps_by_method: Mapping[str, Any], *,
                    titles: Sequence[str] | None = None,
                    class_names: Sequence[str] | None = None,
                    column_titles: Sequence[str] | None = None,
                    overlay_alpha: float | None = None, reduce: str = "sum",
                    signed: bool | None = None, cmap: str | None = None,
                    percentile: float | None = DEFAULT_PERCENTILE,
                    backend: str = "matplotlib", show_sums: bool = False,
                    cell_size: float = 2.0, suptitle: str | None = None) -> Any:
    """A figure comparing methods: rows = samples (or classes), columns = image + methods.

    Args:
        images: N images, a batch (N, H, W[, C]) or a list (any range, see
            :func:`to_rgb_uint8`).
        maps_by_method: Column label → N relevance maps (N, H, W[, C]); columns keep the
            mapping's order. Maps of another size than their image are resized.
        titles: Optional N row labels (e.g. file names), shown over the image column.
        class_names: Optional N explained-class labels, added to the row labels.
        column_titles: Optional labels of the method columns (default: the mapping's keys).
        overlay_alpha: None: plain heatmaps; a float: heatmaps blended over the image.
        reduce: Channel reduction of the maps.
        signed: Diverging (True) / sequential (False) colormap; None: per column (diverging
            if any map of the column is signed).
        cmap: Colormap name (None: "bwr" for signed maps, "hot" otherwise).
        percentile: Percentile of |R| that gets full colour (per map).
        backend: "matplotlib" or "opencv" colormaps.
        show_sums: Write ΣR under each map (and :data:`SUM_NOTE` under the figure).
        cell_size: Size of one cell in inches.
        suptitle: Optional figure title.

    Each method column ends in a colour bar stating its scale (:func:`draw_colorbar`); with
    ``signed=None`` a column is diverging when any of its maps is signed.

    Returns:
        A ``matplotlib.figure.Figure`` (not registered with pyplot); save it with
        :func:`save_png`.
    """
    from matplotlib.figure import Figure

    if not isinstance(maps_by_method, Mapping):
        raise TypeError("maps_by_method must be a mapping {method name: (N, H, W[, C]) maps}")
    first = next(iter(maps_by_method.values()), None)
    rows = _image_batch(images, None if first is None else len(np.asarray(first)))
    n = len(rows)
    if n == 0:
        raise ValueError("comparison_grid needs at least one image")
    columns: list[tuple[str, np.ndarray]] = []
    for name, maps in maps_by_method.items():
        array = _as_float(maps, f"maps of {name!r}")
        if array.ndim not in (3, 4) or len(array) != n:
            raise ValueError(
                f"maps of {name!r} have shape {array.shape}; expected {n} maps "
                f"(N={n}, H, W[, C]) for {n} image(s)")
        columns.append((str(name), array))
    labels = [c[0] for c in columns] if column_titles is None else [str(t) for t in column_titles]
    if len(labels) != len(columns):
        raise ValueError(f"got {len(labels)} column_titles for {len(columns)} methods")
    for what, seq in (("titles", titles), ("class_names", class_names)):
        if seq is not None and len(seq) != n:
            raise ValueError(f"got {len(seq)} {what} for {n} image(s)")
    shown = [to_rgb_uint8(img) for img in rows]
    options = {"reduce": reduce, "cmap": cmap, "percentile": percentile, "backend": backend}
    column_signed = [column_is_signed(maps, reduce) if signed is None else bool(signed)
                     for _, maps in columns]
    n_cols = 1 + len(columns)
    bar_height = 0.45
    note_height = 0.45 if show_sums else 0.0
    fig = Figure(figsize=(cell_size * n_cols, cell_size * n + bar_height + note_height
                          + (0.4 if suptitle else 0.0)))
    grid = fig.add_gridspec(n + 1, n_cols, height_ratios=[cell_size] * n + [bar_height])
    axes = [[fig.add_subplot(grid[i, j]) for j in range(n_cols)] for i in range(n)]
    for i in range(n):
        row_label = [str(titles[i])] if titles is not None else []
        if class_names is not None:
            row_label.append(f"→ {class_names[i]}")
        ax = axes[i][0]
        ax.imshow(shown[i])
        if row_label:
            ax.set_title("\n".join(row_label), fontsize=8)
        elif i == 0:
            ax.set_title("input", fontsize=9)
        for j, (_, maps) in enumerate(columns, start=1):
            ax = axes[i][j]
            rel = maps[i]
            style = {**options, "signed": column_signed[j - 1]}
            if overlay_alpha is None:
                picture = heatmap(rel, size=shown[i].shape[:2], **style)
            else:
                picture = overlay(shown[i], rel, overlay_alpha, **style)
            ax.imshow(picture)
            if i == 0:
                ax.set_title(labels[j - 1], fontsize=9)
            if show_sums:
                ax.set_xlabel(f"ΣR = {float(rel.sum()):.3g}", fontsize=7)
    for ax in (a for row in axes for a in row):
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_visible(False)
    for j, is_signed_column in enumerate(column_signed, start=1):
        holder = fig.add_subplot(grid[n, j])
        holder.set_axis_off()
        cax = holder.inset_axes([0.08, 0.62, 0.84, 0.22])
        draw_colorbar(fig, cax, signed=is_signed_column, cmap=cmap, backend=backend,
                      percentile=percentile, fontsize=5.5)
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    bottom = 0.0
    if show_sums:
        import textwrap

        bottom = note_height / fig.get_figheight()
        fig.text(0.01, 0.005, "\n".join(textwrap.wrap(SUM_NOTE, int(18 * cell_size * n_cols))),
                 fontsize=6, va="bottom", ha="left")
    fig.tight_layout(rect=(0, bottom, 1, 1))
    return fig


def _fit_text(text: str, width: int, scale: float) -> str:
    """Trims ``text`` (with "..") until it fits ``width`` pixels in OpenCV's Hershey font."""
    text = text.encode("ascii", "replace").decode("ascii")
    if cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)[0][0] <= width:
        return text
    while text and cv2.getTextSize(text + "..", cv2.FONT_HERSHEY_SIMPLEX, scale, 1)[0][0] > width:
        text = text[:-1]
    return text + ".."


def _put_text(canvas: np.ndarray, text: str, x: int, y: int, width: int,
              scale: float = 0.4) -> None:
    cv2.putText(canvas, _fit_text(text, width, scale), (x, y), cv2.FONT_HERSHEY_SIMPLEX, scale,
                (0, 0, 0), 1, cv2.LINE_AA)


def _text_width(text: str, scale: float) -> int:
    return cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)[0][0]


def wrap_text(text: str, width: int, scale: float = 0.4) -> list[str]:
    """Breaks ``text`` into lines that fit ``width`` pixels in OpenCV's Hershey font.

    Lines break after spaces, commas, "(" and "="; a word longer than a line is cut
    into pieces. Nothing is dropped: joining the lines gives ``text`` back (ASCII).

    Args:
        text: The label.
        width: Available width in pixels.
        scale: OpenCV font scale.

    Returns:
        The lines (at least one).
    """
    text = text.encode("ascii", "replace").decode("ascii")
    pieces, current = [], ""
    for char in text:
        current += char
        if char in " ,(=":
            pieces.append(current)
            current = ""
    if current:
        pieces.append(current)
    lines: list[str] = []
    line = ""
    for piece in pieces:
        if _text_width(line + piece, scale) <= width:
            line += piece
            continue
        if line:
            lines.append(line)
            line = ""
        while _text_width(piece, scale) > width and len(piece) > 1:
            cut = len(piece) - 1
            while cut > 1 and _text_width(piece[:cut], scale) > width:
                cut -= 1
            lines.append(piece[:cut])
            piece = piece[cut:]
        line = piece
    lines.append(line)
    return [ln.rstrip() if ln.strip() else ln for ln in lines]


def _put_lines(canvas: np.ndarray, lines: Sequence[str], x: int, y_top: int,
               scale: float = 0.4, line_height: int = 14) -> None:
    for k, line in enumerate(lines):
        cv2.putText(canvas, line, (x, y_top + (k + 1) * line_height - 3),
                    cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 1, cv2.LINE_AA)


def _scale_strip(signed: bool, cmap: str | None, backend: str, width: int) -> np.ndarray:
    """A (10, width, 3) colour ramp of the normalised range [-1, 1] or [0, 1]."""
    ramp = np.linspace(-1.0 if signed else 0.0, 1.0, max(width, 2), dtype=np.float32)
    return colorize(np.repeat(ramp[None], 10, axis=0), signed, cmap, backend)


def _fit_cell(picture: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resizes into a (height, width) white cell, keeping the aspect ratio, centred."""
    h, w = picture.shape[:2]
    scale = min(height / h, width / w)
    new_h, new_w = max(1, round(h * scale)), max(1, round(w * scale))
    interpolation = cv2.INTER_NEAREST if scale >= 1 else cv2.INTER_AREA
    resized = cv2.resize(picture, (new_w, new_h), interpolation=interpolation)
    cell = np.full((height, width, 3), 255, np.uint8)
    top, left = (height - new_h) // 2, (width - new_w) // 2
    cell[top:top + new_h, left:left + new_w] = resized
    return cell


def grid_image(images: Any, maps_by_method: Mapping[str, Any], *,
               row_labels: Sequence[str] | None = None,
               column_titles: Sequence[str] | None = None, title: str | None = None,
               cell: int = 128, overlay_alpha: float | None = None, reduce: str = "sum",
               signed: bool | None = None, cmap: str | None = None,
               percentile: float | None = DEFAULT_PERCENTILE,
               backend: str = "matplotlib") -> np.ndarray:
    """A fast comparison grid as one uint8 RGB array (numpy + OpenCV, no matplotlib).

    Same layout as :func:`comparison_grid` (rows = samples, columns = image + methods), drawn
    directly: about 100x faster, meant for training callbacks and TensorBoard. Small inputs
    are enlarged with nearest-neighbour interpolation so single pixels stay visible. Labels
    use OpenCV's ASCII font (other characters become "?") and wrap onto more lines instead
    of being cut. A footer shows each column's colour ramp (−s … 0 … +s or 0 … s) and
    states s (:func:`scale_label`); with ``signed=None`` a column is diverging when any of
    its maps is signed.

    Args:
        images: N images (see :func:`comparison_grid`).
        maps_by_method: Column label → N relevance maps (N, H, W[, C]).
        row_labels: Optional N labels, drawn over each row.
        column_titles: Optional labels of the method columns (default: the mapping's keys).
        title: Optional line at the top.
        cell: Side of one cell in pixels.
        overlay_alpha: As in :func:`comparison_grid`.
        reduce: As in :func:`comparison_grid`.
        signed: As in :func:`comparison_grid`.
        cmap: As in :func:`comparison_grid`.
        percentile: As in :func:`comparison_grid`.
        backend: As in :func:`comparison_grid`.

    Returns:
        uint8 array (H, W, 3) with W = (1 + methods) * (cell + 4) + 4 and
        H = [20 if title] + (4 + 14 * header lines) + Σ_rows (cell + 2 + 14 * label lines
        + 4) + 44 (scale footer); one line each without wrapping.
    """
    if not isinstance(maps_by_method, Mapping):
        raise TypeError("maps_by_method must be a mapping {method name: (N, H, W[, C]) maps}")
    if cell < 16:
        raise ValueError(f"cell must be at least 16 pixels, got {cell}")
    first = next(iter(maps_by_method.values()), None)
    rows = _image_batch(images, None if first is None else len(np.asarray(first)))
    n = len(rows)
    if n == 0:
        raise ValueError("grid_image needs at least one image")
    columns = []
    for name, maps in maps_by_method.items():
        array = _as_float(maps, f"maps of {name!r}")
        if array.ndim not in (3, 4) or len(array) != n:
            raise ValueError(f"maps of {name!r} have shape {array.shape}; expected {n} maps "
                             f"(N={n}, H, W[, C]) for {n} image(s)")
        columns.append(array)
    labels = list(maps_by_method) if column_titles is None else list(column_titles)
    if len(labels) != len(columns):
        raise ValueError(f"got {len(labels)} column_titles for {len(columns)} methods")
    if row_labels is not None and len(row_labels) != n:
        raise ValueError(f"got {len(row_labels)} row_labels for {n} image(s)")
    column_signed = [column_is_signed(maps, reduce) if signed is None else bool(signed)
                     for maps in columns]
    gap, line, footer = 4, 14, 44
    width = (1 + len(columns)) * (cell + gap) + gap
    headers = [wrap_text(str(label), cell) for label in ["input", *labels]]
    header = 4 + line * max(len(h) for h in headers)
    row_lines = [wrap_text(str(label), width - 2 * gap) if row_labels is not None else [""]
                 for label in (row_labels if row_labels is not None else [""] * n)]
    bands = [2 + line * len(lines) for lines in row_lines]
    top = (20 if title else 0) + header
    height = top + sum(cell + band + gap for band in bands) + footer
    canvas = np.full((height, width, 3), 255, np.uint8)
    if title:
        _put_text(canvas, title, gap, 15, width - 2 * gap, 0.45)
    for j, lines in enumerate(headers):
        _put_lines(canvas, lines, gap + j * (cell + gap), top - header + 2)
    options = {"reduce": reduce, "cmap": cmap, "percentile": percentile, "backend": backend}
    y = top
    for i, raw in enumerate(rows):
        image = to_rgb_uint8(raw)
        band = bands[i]
        if row_labels is not None:
            _put_lines(canvas, row_lines[i], gap, y)
        pictures = [image]
        for maps, is_signed_column in zip(columns, column_signed):
            style = {**options, "signed": is_signed_column}
            if overlay_alpha is None:
                pictures.append(heatmap(maps[i], size=image.shape[:2], **style))
            else:
                pictures.append(overlay(image, maps[i], overlay_alpha, **style))
        for j, picture in enumerate(pictures):
            x = gap + j * (cell + gap)
            canvas[y + band:y + band + cell, x:x + cell] = _fit_cell(picture, cell, cell)
        y += cell + band + gap
    for j, is_signed_column in enumerate(column_signed, start=1):
        x = gap + j * (cell + gap)
        canvas[y + 2:y + 12, x:x + cell] = _scale_strip(is_signed_column, cmap, backend, cell)
        ticks = ["-s", "0", "+s"] if is_signed_column else ["0", "s"]
        for k, tick in enumerate(ticks):
            position = x + round(k * (cell - 1) / (len(ticks) - 1))
            offset = _text_width(tick, 0.35) * k // (len(ticks) - 1)
            cv2.putText(canvas, tick, (position - offset, y + 24), cv2.FONT_HERSHEY_SIMPLEX,
                        0.35, (0, 0, 0), 1, cv2.LINE_AA)
    _put_text(canvas, scale_label(percentile), gap, y + 40, width - 2 * gap, 0.35)
    return canvas


def figure_to_array(fig: Any, dpi: float = 100) -> np.ndarray:
    """Renders a matplotlib Figure to a uint8 RGB array (H, W, 3)."""
    data = _png_bytes(fig, dpi)
    decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    return np.ascontiguousarray(decoded[..., ::-1])


# ----------------------------------------------------------------------------- files
def _png_bytes(obj: Any, dpi: float) -> bytes:
    if hasattr(obj, "savefig"):
        buffer = io.BytesIO()
        obj.savefig(buffer, format="png", dpi=dpi)
        return buffer.getvalue()
    array = np.asarray(obj)
    if array.dtype == bool:
        array = array.astype(np.uint8) * 255
    if array.dtype != np.uint8:
        if array.dtype.kind == "f" and array.size and np.isfinite(array).all() \
                and array.min() >= 0.0 and array.max() <= 1.0:
            array = np.round(array * 255.0).astype(np.uint8)
        else:
            raise ValueError(
                f"save_png needs a uint8 image or floats in [0, 1]; got dtype {array.dtype} "
                f"shape {array.shape} (use heatmap() or to_rgb_uint8() first)")
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim == 3 and array.shape[-1] == 3:
        array = array[..., ::-1]
    elif array.ndim == 3 and array.shape[-1] == 4:
        array = array[..., [2, 1, 0, 3]]
    elif array.ndim != 2:
        raise ValueError(
            f"save_png takes (H, W), (H, W, 1), (H, W, 3) RGB or (H, W, 4) RGBA images or a "
            f"matplotlib Figure; got shape {array.shape}")
    if min(array.shape[:2]) == 0:
        raise ValueError(f"save_png got an empty image of shape {array.shape}")
    ok, encoded = cv2.imencode(".png", np.ascontiguousarray(array))
    if not ok:  # pragma: no cover - OpenCV reports no reason
        raise ValueError(f"OpenCV could not encode an image of shape {array.shape} as PNG")
    return encoded.tobytes()


def atomic_write(path: str | os.PathLike[str], data: bytes, *, overwrite: bool = False) -> str:
    """Writes bytes to ``path`` atomically: a temporary file in the same folder, then a rename.

    Readers never see a half-written file. Without ``overwrite`` an existing file is never
    replaced, not even by a concurrent writer (the final step is a hard link, which fails if
    the name exists; on file systems without hard links an existence check is used).

    Args:
        path: Target file; missing parent folders are created.
        data: The content.
        overwrite: Replace an existing file.

    Returns:
        The path written, as a string.

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is False.
    """
    target = os.fspath(path)
    if os.path.isdir(target):
        raise IsADirectoryError(f"{target} is a directory, not a file name")
    folder = os.path.dirname(os.path.abspath(target))
    if not overwrite and os.path.lexists(target):
        raise FileExistsError(f"{target} exists; pass overwrite=True (or --force) to replace it")
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, f".{os.path.basename(target)}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        with open(tmp, "xb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if overwrite:
            os.replace(tmp, target)
            return target
        try:
            os.link(tmp, target)
        except FileExistsError:
            raise FileExistsError(
                f"{target} exists; pass overwrite=True (or --force) to replace it") from None
        except OSError:  # no hard links here (some network / FAT file systems)
            if os.path.lexists(target):
                raise FileExistsError(
                    f"{target} exists; pass overwrite=True (or --force) to replace it") from None
            os.replace(tmp, target)
        return target
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)


def save_png(array_or_figure: Any, path: str | os.PathLike[str], *, overwrite: bool = False,
             dpi: float = 100) -> str:
    """Saves an image array or a matplotlib Figure as PNG, atomically.

    Args:
        array_or_figure: uint8 (H, W) gray, (H, W, 3) RGB, (H, W, 4) RGBA (floats in [0, 1]
            are accepted), or a matplotlib Figure.
        path: Target file (parent folders are created).
        overwrite: Replace an existing file (default: raise ``FileExistsError``).
        dpi: Resolution for figures.

    Returns:
        The path written, as a string.
    """
    data = _png_bytes(array_or_figure, dpi)
    return atomic_write(path, data, overwrite=overwrite)


# ----------------------------------------------------------------------------- tokens
def token_labels(tokens: Any, vocabulary: Any = None) -> list[str]:
    """Strings for the tokens of one sequence.

    Args:
        tokens: A list of strings (used as they are) or token ids (T,).
        vocabulary: For ids: a tokenizer's id -> string table (dict) or a list of strings
            indexed by id; None shows the ids themselves.

    Returns:
        One label per token.
    """
    if isinstance(tokens, str):
        raise TypeError("tokens must be a sequence of strings or ids, not one string")
    if hasattr(tokens, "numpy"):
        tokens = tokens.numpy()
    items = list(np.asarray(tokens).reshape(-1)) if not isinstance(tokens, list) else tokens
    if all(isinstance(t, str) for t in items):
        return list(items)
    labels = []
    for item in items:
        index = int(item)
        if vocabulary is None:
            labels.append(str(index))
        elif isinstance(vocabulary, Mapping):
            labels.append(str(vocabulary.get(index, f"[{index}]")))
        else:
            labels.append(str(vocabulary[index]) if 0 <= index < len(vocabulary)
                          else f"[{index}]")
    return labels


def _token_colors(relevance: Any, tokens: Any, vocabulary: Any, mask: Any, cmap: str | None,
                  percentile: float | None) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Labels, uint8 RGB colours (T, 3) and values of the shown tokens (diverging scale)."""
    values = _as_float(relevance).reshape(-1)
    labels = token_labels(tokens, vocabulary)
    if len(labels) != len(values):
        raise ValueError(f"{len(labels)} tokens but {len(values)} relevance values; "
                         "pass one sample's (tokens,) map and its tokens")
    if mask is not None:
        keep = np.asarray(mask).reshape(-1).astype(bool)
        if keep.shape != values.shape:
            raise ValueError(f"mask has {keep.size} entries for {values.size} tokens")
        labels = [label for label, k in zip(labels, keep) if k]
        values = values[keep]
    colors = colorize(normalize(values[None, :], True, percentile), True,
                      cmap or DEFAULT_SIGNED_CMAP)[0]
    return labels, colors, values


def _ink(color: np.ndarray) -> tuple[int, int, int]:
    """Black or white text, whichever reads better on ``color``."""
    luminance = 0.299 * color[0] + 0.587 * color[1] + 0.114 * color[2]
    return (0, 0, 0) if luminance > 120 else (255, 255, 255)


def token_heatmap(relevance: Any, tokens: Any, *, vocabulary: Any = None, mask: Any = None,
                  cmap: str | None = None, percentile: float | None = None,
                  width: int = 800, scale: float = 0.5) -> np.ndarray:
    """One sequence's token map as an image: each token on a background coloured by its
    relevance (diverging colormap, zero is the centre colour), wrapped into lines.

    Args:
        relevance: (tokens,) or (1, tokens), e.g. one row of a token-input analyzer's output.
        tokens: The token strings, or ids together with ``vocabulary``.
        vocabulary: id -> string dict or list of strings (see :func:`token_labels`).
        mask: Optional (tokens,) booleans; tokens with False (padding) are left out.
        cmap: Diverging colormap (default "bwr").
        percentile: Percentile of |R| that gets full colour (None: max |R|).
        width: Image width in pixels (lines wrap to it).
        scale: OpenCV font scale.

    Returns:
        uint8 RGB image (H, width, 3).
    """
    labels, colors, _ = _token_colors(relevance, tokens, vocabulary, mask, cmap, percentile)
    font, pad = cv2.FONT_HERSHEY_SIMPLEX, 4
    line = cv2.getTextSize("Ag", font, scale, 1)[0][1] + 3 * pad
    places, x, y = [], pad, pad
    for label in labels:
        text = _fit_text(label, width - 4 * pad, scale)
        cell = cv2.getTextSize(text, font, scale, 1)[0][0] + 2 * pad
        if x + cell > width - pad and x > pad:
            x, y = pad, y + line + pad
        places.append((text, x, y, cell))
        x += cell + pad
    canvas = np.full((y + line + pad, width, 3), 255, np.uint8)
    for (text, left, top, cell), color in zip(places, colors):
        canvas[top:top + line, left:left + cell] = color
        cv2.putText(canvas, text, (left + pad, top + line - 2 * pad), font, scale,
                    _ink(color), 1, cv2.LINE_AA)
    return canvas


def token_heatmap_html(relevance: Any, tokens: Any, *, vocabulary: Any = None,
                       mask: Any = None, cmap: str | None = None,
                       percentile: float | None = None, title: str = "") -> str:
    """A small self-contained HTML page (inline styles, no scripts) of one sequence's token
    map; each token's value shows on hover. Suits long texts, which wrap in the browser.

    Args:
        relevance: One sequence's (tokens,) map, as for :func:`token_heatmap`.
        tokens: Token strings or ids, as for :func:`token_heatmap`.
        vocabulary: Id -> string table or list of strings (for ids).
        mask: False marks padding, left out.
        cmap: Colormap name (default: diverging, zero is white).
        percentile: Colour scale from this percentile of |R| (default: the max).
        title: Optional heading.

    Returns:
        The HTML document.
    """
    import html

    labels, colors, values = _token_colors(relevance, tokens, vocabulary, mask, cmap,
                                           percentile)
    spans = []
    for label, color, value in zip(labels, colors, values):
        ink = "#000" if _ink(color) == (0, 0, 0) else "#fff"
        spans.append(
            f'<span style="background:#{int(color[0]):02x}{int(color[1]):02x}'
            f'{int(color[2]):02x};color:{ink};padding:1px 3px;margin:1px;border-radius:3px;'
            f'display:inline-block" title="{float(value):.4g}">{html.escape(label)}</span>')
    heading = f"<h3>{html.escape(title)}</h3>" if title else ""
    return ("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>"
            f"{html.escape(title or 'token relevance')}</title></head>"
            f'<body style="font-family:sans-serif;line-height:1.8">{heading}<div>'
            + " ".join(spans) + "</div></body></html>\n")


def save_token_html(relevance: Any, tokens: Any, path: str | os.PathLike[str], *,
                    overwrite: bool = False, **kwargs: Any) -> str:
    """Writes :func:`token_heatmap_html` to ``path`` atomically (see :func:`atomic_write`).

    Returns:
        The path written.
    """
    document = token_heatmap_html(relevance, tokens, **kwargs)
    return atomic_write(path, document.encode("utf-8"), overwrite=overwrite)


__all__ = [
    "BACKENDS",
    "CUSTOM_CMAPS",
    "REDUCTIONS",
    "SUM_NOTE",
    "atomic_write",
    "colorize",
    "colormap_lut",
    "column_is_signed",
    "comparison_grid",
    "draw_colorbar",
    "figure_to_array",
    "grid_image",
    "heatmap",
    "heatmaps",
    "is_signed",
    "normalize",
    "overlay",
    "reduce_channels",
    "save_png",
    "save_token_html",
    "scale_label",
    "to_rgb_uint8",
    "token_heatmap",
    "token_heatmap_html",
    "token_labels",
    "wrap_text",
]
