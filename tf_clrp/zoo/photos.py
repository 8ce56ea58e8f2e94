"""Real photos that ship inside installed packages (no downloads), plus mosaics.

Sources: scikit-image's bundled data (``skimage.data``), matplotlib's sample data and,
when scikit-learn is installed, ``sklearn.datasets.load_sample_image``. Grayscale
images are returned as 3 identical RGB channels.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from typing import Any

import cv2
import numpy as np

from tf_clrp._io import read_image

__all__ = ["PHOTO_SOURCES", "list_photos", "load_photo", "make_mosaic"]


def _optional(module: str, photo: str, package: str, extra: str) -> Any:
    """Imports ``module`` of an optional package, or says which photo needs it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(
            f"photo {photo!r} needs {package}: pip install {package} "
            f"(or pip install 'tf_clrp[{extra}]')"
        ) from exc


def _skimage(name: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        skimage_data = _optional("skimage.data", name, "scikit-image", "demo")
        if name == "stereo_motorcycle":
            return skimage_data.stereo_motorcycle()[0]
        return getattr(skimage_data, name)()

    return load


def _matplotlib(fname: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        from matplotlib import cbook

        path = str(cbook.get_sample_data(fname, asfileobj=False))
        rgb = read_image(path)
        if rgb is None:  # pragma: no cover - broken matplotlib install
            raise FileNotFoundError(f"could not read matplotlib sample image {path}")
        return rgb

    return load


def _sklearn(fname: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        datasets = _optional("sklearn.datasets", fname.split(".")[0], "scikit-learn", "test")
        return datasets.load_sample_image(fname)

    return load


#: name -> (description, loader). Loaders return the full-size image.
PHOTO_SOURCES: dict[str, tuple[str, Callable[[], np.ndarray]]] = {
    "chelsea": ("skimage: Chelsea the cat", _skimage("chelsea")),
    "coffee": ("skimage: cup of coffee", _skimage("coffee")),
    "rocket": ("skimage: rocket on launch pad", _skimage("rocket")),
    "astronaut": ("skimage: astronaut Eileen Collins", _skimage("astronaut")),
    "motorcycle": ("skimage: stereo_motorcycle, left image", _skimage("stereo_motorcycle")),
    "camera": ("skimage: cameraman (grayscale)", _skimage("camera")),
    "coins": ("skimage: coins (grayscale)", _skimage("coins")),
    "moon": ("skimage: moon surface (grayscale)", _skimage("moon")),
    "clock": ("skimage: clock (grayscale)", _skimage("clock")),
    "hubble_deep_field": ("skimage: Hubble deep field", _skimage("hubble_deep_field")),
    "retina": ("skimage: human retina", _skimage("retina")),
    "immunohistochemistry": ("skimage: IHC stained tissue", _skimage("immunohistochemistry")),
    "grace_hopper": ("matplotlib: Grace Hopper portrait", _matplotlib("grace_hopper.jpg")),
    "china": ("scikit-learn: Chinese temple", _sklearn("china.jpg")),
    "flower": ("scikit-learn: flower", _sklearn("flower.jpg")),
}

_ALIASES = {"cat": "chelsea", "stereo_motorcycle": "motorcycle"}


def list_photos(available_only: bool = False) -> list[str]:
    """Names accepted by :func:`load_photo` (aliases ``cat``, ``stereo_motorcycle`` too).

    Args:
        available_only: If True, drop photos whose source package is not installed.

    Returns:
        Photo names in a fixed order.
    """
    names = list(PHOTO_SOURCES)
    if available_only:
        import importlib.util

        need = {"skimage": "skimage: ", "matplotlib": "matplotlib: ", "sklearn": "scikit-learn: "}
        missing = {p for mod, p in need.items() if importlib.util.find_spec(mod) is None}
        names = [n for n in names if not any(PHOTO_SOURCES[n][0].startswith(p) for p in missing)]
    return names


def _to_rgb_uint8(img: np.ndarray) -> np.ndarray:
    img = np.asarray(img)
    if img.dtype == bool:
        img = img.astype(np.uint8) * 255
    elif img.dtype != np.uint8:
        img = np.clip(img, 0, 255).astype(np.uint8)
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    elif img.ndim == 3 and img.shape[2] == 4:
        img = img[:, :, :3]
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"unexpected image shape {img.shape}")
    return np.ascontiguousarray(img)


def center_crop_resize(img: np.ndarray, size: int | tuple[int, int] = 224) -> np.ndarray:
    """Crop the largest centred square (or target aspect) and resize with INTER_AREA.

    Args:
        img: HxWx3 image.
        size: Output side, or (height, width).

    Returns:
        uint8 RGB array of shape (height, width, 3).
    """
    img = _to_rgb_uint8(img)
    oh, ow = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    h, w = img.shape[:2]
    scale = min(h / oh, w / ow)
    ch, cw = round(oh * scale), round(ow * scale)
    y0, x0 = (h - ch) // 2, (w - cw) // 2
    crop = img[y0 : y0 + ch, x0 : x0 + cw]
    interp = cv2.INTER_AREA if ch >= oh else cv2.INTER_LINEAR
    return np.ascontiguousarray(cv2.resize(crop, (ow, oh), interpolation=interp))


def load_photo(name: str, size: int | tuple[int, int] | None = 224) -> np.ndarray:
    """Load a bundled photo, centre-cropped and resized.

    Args:
        name: One of :func:`list_photos` (or alias ``cat``/``stereo_motorcycle``).
        size: Output side (square), (height, width), or None for the original image.

    Returns:
        uint8 RGB array of shape (size, size, 3).

    Raises:
        KeyError: unknown name (message lists the valid names).
        ImportError: the package that ships the photo is missing (message names it).
    """
    key = _ALIASES.get(name, name)
    if key not in PHOTO_SOURCES:
        raise KeyError(f"unknown photo {name!r}; available: {', '.join(PHOTO_SOURCES)}")
    img = _to_rgb_uint8(PHOTO_SOURCES[key][1]())
    return img if size is None else center_crop_resize(img, size)


def make_mosaic(
    images: Sequence[Any], grid: tuple[int, int] = (2, 2), tile: int = 112
) -> tuple[np.ndarray, list[tuple[int, int, int, int]]]:
    """Tile images into a grid (row-major), e.g. for the Pointing Game.

    Args:
        images: Up to ``rows * cols`` HxWx3 (or HxW) images; each is centre-cropped and
            resized to ``tile`` x ``tile``. Missing cells stay black.
        grid: (rows, cols).
        tile: Side of every tile in pixels.

    Returns:
        ``(mosaic, boxes)``: uint8 array of shape (rows*tile, cols*tile, 3) and, for
        each input image i, ``boxes[i] = (y0, x0, y1, x1)`` (end-exclusive) of its tile.
    """
    rows, cols = int(grid[0]), int(grid[1])
    if len(images) > rows * cols:
        raise ValueError(f"{len(images)} images do not fit a {rows}x{cols} grid")
    mosaic = np.zeros((rows * tile, cols * tile, 3), dtype=np.uint8)
    boxes: list[tuple[int, int, int, int]] = []
    for i, img in enumerate(images):
        r, c = divmod(i, cols)
        y0, x0 = r * tile, c * tile
        mosaic[y0 : y0 + tile, x0 : x0 + tile] = center_crop_resize(np.asarray(img), tile)
        boxes.append((y0, x0, y0 + tile, x0 + tile))
    return mosaic, boxes
