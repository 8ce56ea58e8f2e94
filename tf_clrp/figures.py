"""The class-contrast figure: one image explained for several classes by several methods.

This is the figure at the top of the README, written by ``tf-clrp demo``: rows are the
explained classes, columns the input and the methods (titled), and under the maps one
colour bar per method family stating the scale. Within a family every map uses the same
colormap (diverging if any of the family's maps is signed), so one bar is true for all.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from tf_clrp import visualize
from tf_clrp.registry import ANALYZERS

#: Registry family (``tf_clrp.registry.FAMILIES``) → figure family; the rest (LRP rules and
#: presets, CLRP and SGLRP, unregistered names) are "LRP".
_FIGURE_FAMILIES: dict[str, str] = {
    "gradient": "gradient",
    "model_agnostic": "model-agnostic",
    "cam": "CAM",
}
#: Family → the words on its colour bar.
FAMILY_TITLES: dict[str, str] = {
    "gradient": "gradient family",
    "LRP": "LRP family (CLRP included)",
    "model-agnostic": "model-agnostic",
    "CAM": "class activation maps",
}
#: Analyzer name → column title (names not listed are shown as they are).
METHOD_TITLES: dict[str, str] = {
    "gradient": "Gradient",
    "input_t_gradient": "Input × gradient",
    "deconvnet": "DeConvNet",
    "guided_backprop": "Guided Backprop",
    "integrated_gradients": "Integrated Gradients",
    "smoothgrad": "SmoothGrad",
    "lrp.epsilon_plus": "LRP ε+",
    "lrp.z_plus": "LRP z⁺",
    "lrp.epsilon": "LRP ε",
    "clrp": "CLRP",
    "sglrp": "SGLRP",
}


def method_family(name: str) -> str:
    """The figure family of an analyzer name, from its registry entry (default "LRP")."""
    declared = ANALYZERS.get(name)
    return "LRP" if declared is None else _FIGURE_FAMILIES.get(declared.family, "LRP")


#: Analyzer name → figure family, for every registered name.
METHOD_FAMILIES: dict[str, str] = {name: method_family(name) for name in ANALYZERS}


def _family_runs(families: Sequence[str]) -> list[tuple[str, int, int]]:
    """[(family, first column, end column)] of contiguous runs."""
    runs: list[tuple[str, int, int]] = []
    for j, family in enumerate(families):
        if runs and runs[-1][0] == family and runs[-1][2] == j:
            runs[-1] = (family, runs[-1][1], j + 1)
        else:
            runs.append((family, j, j + 1))
    return runs


def class_contrast_figure(
    image: Any,
    maps_by_method: Mapping[str, Any],
    class_labels: Sequence[str],
    *,
    boxes: Sequence[tuple[int, int, int, int]] | None = None,
    column_titles: Sequence[str] | None = None,
    title: str | None = None,
    caption: str | None = None,
    reduce: str = "sum",
    percentile: float | None = visualize.DEFAULT_PERCENTILE,
    cell_size: float = 2.0,
) -> Any:
    """One image explained for K classes: rows = classes, columns = input + methods.

    Args:
        image: The explained image, (H, W[, C]) in any range (see
            :func:`tf_clrp.visualize.to_rgb_uint8`).
        maps_by_method: Analyzer name → K maps (K, H, W[, C]), row k explaining class k.
        class_labels: K row labels (e.g. "Egyptian cat (285), logit 9.1").
        boxes: Optional K boxes (y0, x0, y1, x1), end-exclusive, outlined on the input of
            row k (where the explained object is).
        column_titles: Optional method column titles (default: :data:`METHOD_TITLES`).
        title: Optional figure title.
        caption: Optional text under the colour bars.
        reduce: Channel reduction of the maps.
        percentile: Percentile of |R| that gets full colour (per map).
        cell_size: Size of one cell in inches.

    Returns:
        A ``matplotlib.figure.Figure``; save it with :func:`tf_clrp.visualize.save_png`.
    """
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    shown = visualize.to_rgb_uint8(image)
    names = list(maps_by_method)
    k = len(class_labels)
    if not names or k == 0:
        raise ValueError("class_contrast_figure needs at least one method and one class")
    maps = {}
    for name in names:
        array = np.asarray(maps_by_method[name], dtype=np.float32)
        if array.ndim not in (3, 4) or len(array) != k:
            raise ValueError(
                f"maps of {name!r} have shape {array.shape}; expected {k} maps "
                f"(one per class label)"
            )
        maps[name] = array
    titles = (
        [METHOD_TITLES.get(n, n) for n in names]
        if column_titles is None
        else [str(t) for t in column_titles]
    )
    if len(titles) != len(names):
        raise ValueError(f"got {len(titles)} column_titles for {len(names)} methods")
    if boxes is not None and len(boxes) != k:
        raise ValueError(f"got {len(boxes)} boxes for {k} class labels")
    families = [method_family(n) for n in names]
    signed = {
        f: any(
            visualize.column_is_signed(maps[n], reduce) for n, g in zip(names, families) if g == f
        )
        for f in set(families)
    }
    n_cols = 1 + len(names)
    left, gap, header = 0.5, 0.08, 0.3 + (0.35 if title else 0.0)
    bar_height, caption_height = 0.6, 0.45 if caption else 0.05
    width = left + n_cols * cell_size + (n_cols - 1) * gap + 0.1
    height = header + k * cell_size + k * gap + bar_height + caption_height
    fig = Figure(figsize=(width, height))
    grid = fig.add_gridspec(
        k + 1,
        n_cols,
        height_ratios=[cell_size] * k + [bar_height],
        left=left / width,
        right=1 - 0.1 / width,
        top=1 - header / height,
        bottom=caption_height / height,
        wspace=gap / cell_size,
        hspace=gap / cell_size,
    )
    for row in range(k):
        ax = fig.add_subplot(grid[row, 0])
        ax.imshow(shown)
        if boxes is not None:
            y0, x0, y1, x1 = boxes[row]
            ax.add_patch(
                Rectangle(
                    (x0 - 0.5, y0 - 0.5),
                    x1 - x0,
                    y1 - y0,
                    fill=False,
                    edgecolor="lime",
                    linewidth=1.5,
                )
            )
        ax.set_ylabel(f"explains\n{class_labels[row]}", fontsize=8.5)
        if row == 0:
            ax.set_title("input", fontsize=10)
        for j, name in enumerate(names, start=1):
            ax_map = fig.add_subplot(grid[row, j])
            ax_map.imshow(
                visualize.heatmap(
                    maps[name][row],
                    reduce=reduce,
                    signed=signed[families[j - 1]],
                    percentile=percentile,
                    size=shown.shape[:2],
                )
            )
            if row == 0:
                ax_map.set_title(titles[j - 1], fontsize=10)
    for ax in fig.axes:
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_visible(False)
    for family, start, end in _family_runs(families):
        holder = fig.add_subplot(grid[k, 1 + start : 1 + end])
        holder.set_axis_off()
        share = 0.8 if end - start > 1 else 0.9
        cax = holder.inset_axes([(1 - share) / 2, 0.68, share, 0.18])
        visualize.draw_colorbar(
            fig,
            cax,
            signed=signed[family],
            percentile=percentile,
            title=FAMILY_TITLES.get(family, family),
            fontsize=6.5,
        )
    if title:
        fig.suptitle(title, fontsize=11, y=1 - 0.08 / height, va="top")
    if caption:
        import textwrap

        fig.text(
            0.01,
            0.02 / height,
            "\n".join(textwrap.wrap(caption, int(16.5 * width))),
            fontsize=7,
            va="bottom",
            ha="left",
        )
    return fig


#: Caption of the demo's mosaic figure (what the colours and the methods mean).
DEMO_CAPTION = (
    "Each map is scaled on its own (s = its 99.5th percentile of |R|); green box: the tile "
    "of the explained class. Gradient and Guided Backprop are signed (red > 0 > blue); "
    "Guided Backprop draws nearly the same map for both classes. LRP ε+ favours the "
    "explained object but keeps the other one; CLRP (the explained class minus the dual "
    "'all other classes', each normalised to sum 1) keeps only the explained class's tile."
)


def demo_mosaic_figure(
    mosaic: Any,
    maps_by_method: Mapping[str, Any],
    class_labels: Sequence[str],
    logits: Sequence[float],
    boxes: Sequence[tuple[int, int, int, int]],
) -> Any:
    """The figure ``tf-clrp demo`` writes as ``demo_mosaic.png`` (the README's first figure).

    Args:
        mosaic: The 2×2 mosaic of bundled photos.
        maps_by_method: Analyzer name → one map per explained class.
        class_labels: The explained classes, e.g. "Egyptian cat (285)".
        logits: The explained logit of each row.
        boxes: The tile of each explained class.

    Returns:
        The matplotlib Figure (see :func:`class_contrast_figure`).
    """
    labels = [
        f"{label}\nlogit {float(z):.2f}" for label, z in zip(class_labels, logits, strict=True)
    ]
    return class_contrast_figure(
        mosaic,
        maps_by_method,
        labels,
        boxes=boxes,
        caption=DEMO_CAPTION,
        cell_size=2.2,
        title="One mosaic, two explained classes: EfficientNet-Lite0 (ImageNet)",
    )


__all__ = [
    "DEMO_CAPTION",
    "FAMILY_TITLES",
    "METHOD_FAMILIES",
    "METHOD_TITLES",
    "class_contrast_figure",
    "demo_mosaic_figure",
    "method_family",
]
