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
* :func:`token_heatmap` / :func:`token_heatmap_html` - token maps of sequence models.

Modules: ``maps`` (reduction, normalisation, colours), ``grids`` (comparison grids),
``files`` (PNG files), ``tokens`` (token maps); every name is importable from here.
"""

from tf_clrp._io import atomic_write
from tf_clrp.visualize.files import save_png
from tf_clrp.visualize.grids import (
    SUM_NOTE,
    column_is_signed,
    comparison_grid,
    draw_colorbar,
    figure_to_array,
    grid_image,
    scale_label,
    wrap_text,
)
from tf_clrp.visualize.maps import (
    BACKENDS,
    CUSTOM_CMAPS,
    DEFAULT_PERCENTILE,
    DEFAULT_SIGNED_CMAP,
    DEFAULT_UNSIGNED_CMAP,
    REDUCTIONS,
    SIGN_TOLERANCE,
    colorize,
    colormap_lut,
    heatmap,
    heatmaps,
    is_signed,
    normalize,
    overlay,
    reduce_channels,
    to_rgb_uint8,
)
from tf_clrp.visualize.tokens import (
    save_token_html,
    token_heatmap,
    token_heatmap_html,
    token_labels,
)

__all__ = [
    "BACKENDS",
    "CUSTOM_CMAPS",
    "DEFAULT_PERCENTILE",
    "DEFAULT_SIGNED_CMAP",
    "DEFAULT_UNSIGNED_CMAP",
    "REDUCTIONS",
    "SIGN_TOLERANCE",
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
