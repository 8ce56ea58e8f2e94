"""Finding and reading image files for the CLI, with a pixel limit checked before decoding."""

from __future__ import annotations

import os
import struct
import warnings
from collections.abc import Sequence

import numpy as np

from tf_clrp.cli.common import CliError

#: Image file extensions read from folders.
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
#: Default ``--max-megapixels``: larger images are refused before decoding.
DEFAULT_MAX_MEGAPIXELS = 100.0
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: JPEG start-of-frame markers (baseline, progressive, lossless, ...; not DHT/JPG/DAC).
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def collect_images(paths: Sequence[str]) -> list[str]:
    """Image files named directly or found (non-recursively) in the named folders."""
    files: list[str] = []
    for path in paths:
        if os.path.isdir(path):
            found = sorted(
                os.path.join(path, f)
                for f in os.listdir(path)
                if f.lower().endswith(IMAGE_EXTENSIONS) and os.path.isfile(os.path.join(path, f))
            )
            if not found:
                raise CliError(f"folder {path} has no image files ({', '.join(IMAGE_EXTENSIONS)})")
            files.extend(found)
        elif os.path.isfile(path):
            files.append(path)
        else:
            raise CliError(f"image file or folder not found: {path}")
    return files


def _jpeg_size(handle: object) -> tuple[int, int] | None:
    """(height, width) from a JPEG's start-of-frame segment, walking the segment lengths."""
    read = handle.read  # type: ignore[attr-defined]
    while True:
        byte = read(1)
        while byte and byte != b"\xff":  # skip to the next marker
            byte = read(1)
        while byte == b"\xff":  # fill bytes
            byte = read(1)
        if not byte:
            return None
        marker = byte[0]
        if marker in (0x01, *range(0xD0, 0xDA)):  # markers without a segment
            continue
        header = read(2)
        if len(header) < 2:
            return None
        length = struct.unpack(">H", header)[0]
        if marker in _JPEG_SOF:
            frame = read(5)
            if len(frame) < 5:
                return None
            height, width = struct.unpack(">HH", frame[1:5])
            return height, width
        handle.seek(length - 2, os.SEEK_CUR)  # type: ignore[attr-defined]


def image_size(path: str) -> tuple[int, int] | None:
    """(height, width) of an image file from its header, without decoding the pixels.

    PNG (IHDR) and JPEG (start of frame) are parsed here; other formats are opened lazily
    with Pillow if it is installed.

    Returns:
        The size, or None if the header does not tell it (OpenCV's decoder then decides).
    """
    with open(path, "rb") as handle:
        head = handle.read(24)
        if head.startswith(_PNG_SIGNATURE) and head[12:16] == b"IHDR":
            width, height = struct.unpack(">II", head[16:24])
            return height, width
        if head.startswith(b"\xff\xd8"):
            handle.seek(2)
            return _jpeg_size(handle)
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - Pillow comes with matplotlib
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            with Image.open(path) as image:  # lazy: reads the header only
                width, height = image.size
        except Image.DecompressionBombError as error:
            raise CliError(f"image {path} is too large to open: {error}") from None
        except (OSError, ValueError, SyntaxError):
            return None
    return height, width


def check_pixel_limit(path: str, max_megapixels: float) -> None:
    """Refuses an image larger than ``max_megapixels`` before it is decoded.

    Raises:
        CliError: the header gives more pixels than the limit (the message names the flag).
    """
    size = image_size(path)
    if size is not None and size[0] * size[1] > max_megapixels * 1e6:
        raise CliError(
            f"image {path} has {size[1]}x{size[0]} = {size[0] * size[1] / 1e6:.0f} "
            f"megapixels, over the limit of {max_megapixels:g}; raise it with "
            "--max-megapixels if you mean it"
        )


def read_image(
    path: str,
    size: tuple[int, int] | None,
    channels: int = 3,
    max_megapixels: float = DEFAULT_MAX_MEGAPIXELS,
) -> np.ndarray:
    """Reads an image file with OpenCV as uint8 RGB (or grayscale), optionally resized.

    Args:
        path: Image file.
        size: (height, width) to resize to (aspect ratio not kept), or None.
        channels: 3 (RGB) or 1 (grayscale).
        max_megapixels: Images with more pixels (by their header) are refused undecoded.

    Returns:
        uint8 array (H, W, channels).

    Raises:
        CliError: the file is over the pixel limit or cannot be decoded.
    """
    import cv2

    from tf_clrp._io import read_image as decode_file

    check_pixel_limit(path, max_megapixels)
    image = decode_file(path, channels)
    if image is None:
        raise CliError(f"cannot read image {path} (not an image OpenCV can decode, or corrupt)")
    if size is not None and image.shape[:2] != tuple(size):
        shrink = size[0] * size[1] < image.shape[0] * image.shape[1]
        image = cv2.resize(
            image, (size[1], size[0]), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
        )
    return image.reshape(*image.shape[:2], channels)
