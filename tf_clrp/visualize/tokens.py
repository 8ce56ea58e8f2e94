"""Token-level maps of sequence models: a coloured image or a small HTML page."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import cv2
import numpy as np

from tf_clrp._io import atomic_write
from tf_clrp.visualize.grids import _fit_text
from tf_clrp.visualize.maps import DEFAULT_SIGNED_CMAP, _as_float, colorize, normalize


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
            labels.append(str(vocabulary[index]) if 0 <= index < len(vocabulary) else f"[{index}]")
    return labels


def _token_colors(
    relevance: Any,
    tokens: Any,
    vocabulary: Any,
    mask: Any,
    cmap: str | None,
    percentile: float | None,
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Labels, uint8 RGB colours (T, 3) and values of the shown tokens (diverging scale)."""
    values = _as_float(relevance).reshape(-1)
    labels = token_labels(tokens, vocabulary)
    if len(labels) != len(values):
        raise ValueError(
            f"{len(labels)} tokens but {len(values)} relevance values; "
            "pass one sample's (tokens,) map and its tokens"
        )
    if mask is not None:
        keep = np.asarray(mask).reshape(-1).astype(bool)
        if keep.shape != values.shape:
            raise ValueError(f"mask has {keep.size} entries for {values.size} tokens")
        labels = [label for label, k in zip(labels, keep) if k]
        values = values[keep]
    colors = colorize(
        normalize(values[None, :], True, percentile), True, cmap or DEFAULT_SIGNED_CMAP
    )[0]
    return labels, colors, values


def _ink(color: np.ndarray) -> tuple[int, int, int]:
    """Black or white text, whichever reads better on ``color``."""
    luminance = 0.299 * color[0] + 0.587 * color[1] + 0.114 * color[2]
    return (0, 0, 0) if luminance > 120 else (255, 255, 255)


def token_heatmap(
    relevance: Any,
    tokens: Any,
    *,
    vocabulary: Any = None,
    mask: Any = None,
    cmap: str | None = None,
    percentile: float | None = None,
    width: int = 800,
    scale: float = 0.5,
) -> np.ndarray:
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
        canvas[top : top + line, left : left + cell] = color
        cv2.putText(
            canvas,
            text,
            (left + pad, top + line - 2 * pad),
            font,
            scale,
            _ink(color),
            1,
            cv2.LINE_AA,
        )
    return canvas


def token_heatmap_html(
    relevance: Any,
    tokens: Any,
    *,
    vocabulary: Any = None,
    mask: Any = None,
    cmap: str | None = None,
    percentile: float | None = None,
    title: str = "",
) -> str:
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

    labels, colors, values = _token_colors(relevance, tokens, vocabulary, mask, cmap, percentile)
    spans = []
    for label, color, value in zip(labels, colors, values):
        ink = "#000" if _ink(color) == (0, 0, 0) else "#fff"
        spans.append(
            f'<span style="background:#{int(color[0]):02x}{int(color[1]):02x}'
            f"{int(color[2]):02x};color:{ink};padding:1px 3px;margin:1px;border-radius:3px;"
            f'display:inline-block" title="{float(value):.4g}">{html.escape(label)}</span>'
        )
    heading = f"<h3>{html.escape(title)}</h3>" if title else ""
    return (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>'
        f"{html.escape(title or 'token relevance')}</title></head>"
        f'<body style="font-family:sans-serif;line-height:1.8">{heading}<div>'
        + " ".join(spans)
        + "</div></body></html>\n"
    )


def save_token_html(
    relevance: Any,
    tokens: Any,
    path: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    **kwargs: Any,
) -> str:
    """Writes :func:`token_heatmap_html` to ``path`` atomically (see :func:`atomic_write`).

    Returns:
        The path written.
    """
    document = token_heatmap_html(relevance, tokens, **kwargs)
    return atomic_write(path, document.encode("utf-8"), overwrite=overwrite)
