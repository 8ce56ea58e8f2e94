"""Grids comparing methods: a matplotlib figure or one OpenCV-drawn image, with labels."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import cv2
import numpy as np

from tf_clrp._io import decode_image
from tf_clrp.visualize.files import _png_bytes
from tf_clrp.visualize.maps import (
    DEFAULT_PERCENTILE,
    DEFAULT_SIGNED_CMAP,
    DEFAULT_UNSIGNED_CMAP,
    _as_float,
    colorize,
    colormap_lut,
    heatmap,
    is_signed,
    overlay,
    reduce_channels,
    to_rgb_uint8,
)


# ----------------------------------------------------------------------------- grid
def _image_batch(images: Any, n_maps: int | None) -> list[np.ndarray]:
    if isinstance(images, (list, tuple)):
        return [np.asarray(i) for i in images]
    array = np.asarray(images.numpy() if hasattr(images, "numpy") else images)
    single = array.ndim == 2 or (
        array.ndim == 3 and array.shape[-1] in (3, 4) and n_maps == 1 and array.shape[0] != 1
    )
    if single:
        array = array[None]
    if array.ndim not in (3, 4):
        raise ValueError(
            f"images must be a batch (N, H, W[, C]) or a list of images; got shape {array.shape}"
        )
    return list(array)


#: Footnote of figures that show ΣR: why the sums of different methods differ so much.
SUM_NOTE = (
    "ΣR = sum of the map. Gradient-type maps (gradient, Guided Backprop, DeConvNet) "
    "are not relevance: their sum has no meaning and scales with the input size. "
    "LRP maps sum to the explained logit minus what biases, ε and the input-layer "
    "rule absorb, which in deep BatchNorm networks can be most of it. CLRP is the "
    "positive part of the difference of two maps that each sum to 1, so its sum lies "
    "between 0 and about 1."
)


def scale_label(percentile: float | None = DEFAULT_PERCENTILE) -> str:
    """States the colour scale s of maps normalised by :func:`normalize`.

    Args:
        percentile: The normalisation percentile (None: max |R|).

    Returns:
        e.g. "s = 99.5th percentile of |R|, per map".
    """
    which = (
        "max |R|"
        if percentile is None or float(percentile) >= 100
        else f"{float(percentile):g}th percentile of |R|"
    )
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


def draw_colorbar(
    fig: Any,
    cax: Any,
    *,
    signed: bool,
    cmap: str | None = None,
    backend: str = "matplotlib",
    percentile: float | None = DEFAULT_PERCENTILE,
    title: str | None = None,
    fontsize: float = 7,
) -> Any:
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
    bar = fig.colorbar(
        ScalarMappable(Normalize(low, 1.0), colors), cax=cax, orientation="horizontal"
    )
    ticks = [-1.0, 0.0, 1.0] if signed else [0.0, 1.0]
    bar.set_ticks(ticks, labels=["−s", "0", "+s"] if signed else ["0", "s"])
    bar.ax.tick_params(labelsize=fontsize, length=2, pad=1)
    text = scale_label(percentile)
    bar.set_label(f"{title}; {text}" if title else text, fontsize=fontsize, labelpad=2)
    return bar


def _rows_and_columns(
    images: Any, maps_by_method: Mapping[str, Any], caller: str
) -> tuple[list[np.ndarray], list[tuple[str, np.ndarray]]]:
    """The image rows and the (method name, float maps) columns, one map per image."""
    first = next(iter(maps_by_method.values()), None)
    rows = _image_batch(images, None if first is None else len(np.asarray(first)))
    n = len(rows)
    if n == 0:
        raise ValueError(f"{caller} needs at least one image")
    columns: list[tuple[str, np.ndarray]] = []
    for name, maps in maps_by_method.items():
        array = _as_float(maps, f"maps of {name!r}")
        if array.ndim not in (3, 4) or len(array) != n:
            raise ValueError(
                f"maps of {name!r} have shape {array.shape}; expected {n} maps "
                f"(N={n}, H, W[, C]) for {n} image(s)"
            )
        columns.append((str(name), array))
    return rows, columns


def comparison_grid(
    images: Any,
    maps_by_method: Mapping[str, Any],
    *,
    titles: Sequence[str] | None = None,
    class_names: Sequence[str] | None = None,
    column_titles: Sequence[str] | None = None,
    overlay_alpha: float | None = None,
    reduce: str = "sum",
    signed: bool | None = None,
    cmap: str | None = None,
    percentile: float | None = DEFAULT_PERCENTILE,
    backend: str = "matplotlib",
    show_sums: bool = False,
    cell_size: float = 2.0,
    suptitle: str | None = None,
) -> Any:
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
    rows, columns = _rows_and_columns(images, maps_by_method, "comparison_grid")
    n = len(rows)
    labels = [c[0] for c in columns] if column_titles is None else [str(t) for t in column_titles]
    if len(labels) != len(columns):
        raise ValueError(f"got {len(labels)} column_titles for {len(columns)} methods")
    for what, seq in (("titles", titles), ("class_names", class_names)):
        if seq is not None and len(seq) != n:
            raise ValueError(f"got {len(seq)} {what} for {n} image(s)")
    shown = [to_rgb_uint8(img) for img in rows]
    options = {"reduce": reduce, "cmap": cmap, "percentile": percentile, "backend": backend}
    column_signed = [
        column_is_signed(maps, reduce) if signed is None else bool(signed) for _, maps in columns
    ]
    n_cols = 1 + len(columns)
    bar_height = 0.45
    note_height = 0.45 if show_sums else 0.0
    fig = Figure(
        figsize=(
            cell_size * n_cols,
            cell_size * n + bar_height + note_height + (0.4 if suptitle else 0.0),
        )
    )
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
        draw_colorbar(
            fig,
            cax,
            signed=is_signed_column,
            cmap=cmap,
            backend=backend,
            percentile=percentile,
            fontsize=5.5,
        )
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    bottom = 0.0
    if show_sums:
        import textwrap

        bottom = note_height / fig.get_figheight()
        fig.text(
            0.01,
            0.005,
            "\n".join(textwrap.wrap(SUM_NOTE, int(18 * cell_size * n_cols))),
            fontsize=6,
            va="bottom",
            ha="left",
        )
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


def _draw_text(canvas: np.ndarray, text: str, origin: tuple[int, int], scale: float) -> None:
    """Draws one line of black text with its baseline's left end at ``origin``."""
    cv2.putText(canvas, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 1, cv2.LINE_AA)


def _put_text(
    canvas: np.ndarray, text: str, x: int, y: int, width: int, scale: float = 0.4
) -> None:
    _draw_text(canvas, _fit_text(text, width, scale), (x, y), scale)


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


def _put_lines(
    canvas: np.ndarray,
    lines: Sequence[str],
    x: int,
    y_top: int,
    scale: float = 0.4,
    line_height: int = 14,
) -> None:
    for k, line in enumerate(lines):
        _draw_text(canvas, line, (x, y_top + (k + 1) * line_height - 3), scale)


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
    cell[top : top + new_h, left : left + new_w] = resized
    return cell


def grid_image(
    images: Any,
    maps_by_method: Mapping[str, Any],
    *,
    row_labels: Sequence[str] | None = None,
    column_titles: Sequence[str] | None = None,
    title: str | None = None,
    cell: int = 128,
    overlay_alpha: float | None = None,
    reduce: str = "sum",
    signed: bool | None = None,
    cmap: str | None = None,
    percentile: float | None = DEFAULT_PERCENTILE,
    backend: str = "matplotlib",
) -> np.ndarray:
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
    rows, named = _rows_and_columns(images, maps_by_method, "grid_image")
    n = len(rows)
    columns = [array for _, array in named]
    labels = list(maps_by_method) if column_titles is None else list(column_titles)
    if len(labels) != len(columns):
        raise ValueError(f"got {len(labels)} column_titles for {len(columns)} methods")
    if row_labels is not None and len(row_labels) != n:
        raise ValueError(f"got {len(row_labels)} row_labels for {n} image(s)")
    column_signed = [
        column_is_signed(maps, reduce) if signed is None else bool(signed) for maps in columns
    ]
    gap, line, footer = 4, 14, 44
    width = (1 + len(columns)) * (cell + gap) + gap
    headers = [wrap_text(str(label), cell) for label in ["input", *labels]]
    header = 4 + line * max(len(h) for h in headers)
    row_lines = [
        wrap_text(str(label), width - 2 * gap) if row_labels is not None else [""]
        for label in (row_labels if row_labels is not None else [""] * n)
    ]
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
            canvas[y + band : y + band + cell, x : x + cell] = _fit_cell(picture, cell, cell)
        y += cell + band + gap
    for j, is_signed_column in enumerate(column_signed, start=1):
        x = gap + j * (cell + gap)
        canvas[y + 2 : y + 12, x : x + cell] = _scale_strip(is_signed_column, cmap, backend, cell)
        ticks = ["-s", "0", "+s"] if is_signed_column else ["0", "s"]
        for k, tick in enumerate(ticks):
            position = x + round(k * (cell - 1) / (len(ticks) - 1))
            offset = _text_width(tick, 0.35) * k // (len(ticks) - 1)
            _draw_text(canvas, tick, (position - offset, y + 24), 0.35)
    _put_text(canvas, scale_label(percentile), gap, y + 40, width - 2 * gap, 0.35)
    return canvas


def figure_to_array(fig: Any, dpi: float = 100) -> np.ndarray:
    """Renders a matplotlib Figure to a uint8 RGB array (H, W, 3)."""
    return decode_image(_png_bytes(fig, dpi))
