"""Images and figures as PNG files, written atomically."""

from __future__ import annotations

import io
import os
from typing import Any

import cv2
import numpy as np

from tf_clrp._io import atomic_write


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
        if (
            array.dtype.kind == "f"
            and array.size
            and np.isfinite(array).all()
            and array.min() >= 0.0
            and array.max() <= 1.0
        ):
            array = np.round(array * 255.0).astype(np.uint8)
        else:
            raise ValueError(
                f"save_png needs a uint8 image or floats in [0, 1]; got dtype {array.dtype} "
                f"shape {array.shape} (use heatmap() or to_rgb_uint8() first)"
            )
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim == 3 and array.shape[-1] == 3:
        array = array[..., ::-1]
    elif array.ndim == 3 and array.shape[-1] == 4:
        array = array[..., [2, 1, 0, 3]]
    elif array.ndim != 2:
        raise ValueError(
            f"save_png takes (H, W), (H, W, 1), (H, W, 3) RGB or (H, W, 4) RGBA images or a "
            f"matplotlib Figure; got shape {array.shape}"
        )
    if min(array.shape[:2]) == 0:
        raise ValueError(f"save_png got an empty image of shape {array.shape}")
    ok, encoded = cv2.imencode(".png", np.ascontiguousarray(array))
    if not ok:  # pragma: no cover - OpenCV reports no reason
        raise ValueError(f"OpenCV could not encode an image of shape {array.shape} as PNG")
    return encoded.tobytes()


def save_png(
    array_or_figure: Any, path: str | os.PathLike[str], *, overwrite: bool = False, dpi: float = 100
) -> str:
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
