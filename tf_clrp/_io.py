"""Files and progress for every surface: atomic writes, image reading, progress bars.

The CLI, ``tf_clrp.datasets``, ``tf_clrp.visualize`` and the metrics all use these; none
keeps a copy. Imports no TensorFlow (OpenCV and tqdm only when called).
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import IO, Any

import numpy as np

#: ``progress=`` of the metrics and analyzers: False/None (silent), True (a tqdm bar if tqdm is
#: installed) or a callable ``progress(done, total)`` called after each item.
ProgressArg = bool | Callable[[int, int], Any] | None
Writer = Callable[[IO[bytes]], Any]


def _exists_message(target: str) -> str:
    return f"{target} exists; pass overwrite=True (or --force) to replace it"


def write_temporary(target: str | os.PathLike[str], write: Writer) -> str:
    """Writes a temporary file beside ``target`` (same folder, so renaming it is atomic).

    Args:
        target: The file the temporary one will become; its folder must exist.
        write: Called with the open binary file.

    Returns:
        The temporary file's path, ``.<name>.<random>.tmp``, flushed and fsynced.
    """
    target = os.fspath(target)
    handle, temporary = tempfile.mkstemp(
        prefix=f".{os.path.basename(target)}.",
        suffix=".tmp",
        dir=os.path.dirname(os.path.abspath(target)),
    )
    try:
        with os.fdopen(handle, "wb") as stream:
            write(stream)
            stream.flush()
            with contextlib.suppress(OSError):  # some file systems cannot fsync
                os.fsync(stream.fileno())
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    return temporary


def move_into_place(temporary: str, target: str | os.PathLike[str], overwrite: bool) -> None:
    """Renames a written temporary file to ``target``.

    Without ``overwrite`` an existing file is never replaced, not even by a concurrent writer
    (the final step is a hard link, which fails if the name exists; on file systems without
    hard links an existence check is used).

    Raises:
        FileExistsError: ``target`` exists and ``overwrite`` is False.
    """
    target = os.fspath(target)
    if overwrite:
        os.replace(temporary, target)
        return
    try:
        os.link(temporary, target)
    except FileExistsError:
        raise FileExistsError(_exists_message(target)) from None
    except OSError:  # no hard links here (some network / FAT file systems)
        if os.path.lexists(target):
            raise FileExistsError(_exists_message(target)) from None
        os.replace(temporary, target)
        return
    os.unlink(temporary)


def atomic_write(
    path: str | os.PathLike[str], data: bytes | Writer, *, overwrite: bool = False
) -> str:
    """Writes a file atomically: a temporary file in the same folder, then a rename.

    Readers never see a half-written file; on any failure the old content stays.

    Args:
        path: Target file; missing parent folders are created.
        data: The content, or a function writing it to the open binary file.
        overwrite: Replace an existing file (without it an existing file is never replaced,
            see :func:`move_into_place`).

    Returns:
        The path written, as a string.

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is False.
        IsADirectoryError: ``path`` is a folder.
    """
    target = os.fspath(path)
    if os.path.isdir(target):
        raise IsADirectoryError(f"{target} is a directory, not a file name")
    if not overwrite and os.path.lexists(target):
        raise FileExistsError(_exists_message(target))
    os.makedirs(os.path.dirname(os.path.abspath(target)), exist_ok=True)
    write = data if callable(data) else (lambda stream: stream.write(data))
    temporary = write_temporary(target, write)
    try:
        move_into_place(temporary, target, overwrite)
    finally:
        if os.path.lexists(temporary):
            os.unlink(temporary)
    return target


def decode_image(data: bytes | np.ndarray, channels: int = 3) -> np.ndarray | None:
    """Decodes an encoded image (PNG, JPEG, ...) with OpenCV.

    Args:
        data: The file's bytes.
        channels: 3 (RGB) or 1 (grayscale).

    Returns:
        uint8 (H, W, 3) RGB or (H, W) grayscale, or None if OpenCV cannot decode it.
    """
    import cv2

    buffer = np.frombuffer(data, np.uint8) if isinstance(data, bytes) else data
    if buffer.size == 0:
        return None
    flag = cv2.IMREAD_GRAYSCALE if channels == 1 else cv2.IMREAD_COLOR
    image = cv2.imdecode(buffer, flag)
    if image is None or channels == 1:
        return image
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def read_image(path: str | os.PathLike[str], channels: int = 3) -> np.ndarray | None:
    """Reads an image file (any path, also non-ASCII ones) as :func:`decode_image` does."""
    path = os.fspath(path)
    return decode_image(np.fromfile(path, np.uint8) if os.path.getsize(path) else b"", channels)


def progress_bar(**tqdm_options: Any) -> Any | None:
    """A ``tqdm.auto`` bar with these options, or None when tqdm is not installed."""
    try:
        from tqdm.auto import tqdm
    except ImportError:  # tqdm is optional
        return None
    return tqdm(**tqdm_options)


def progress_iter(
    iterable: Iterable[Any],
    total: int,
    progress: ProgressArg,
    desc: str,
    *,
    lines: bool = False,
    **tqdm_options: Any,
) -> Iterator[Any]:
    """Iterates with an optional progress report.

    Args:
        iterable: What to iterate.
        total: Number of items (for the bar).
        progress: False/None (silent), True (a tqdm bar if tqdm is installed), or a callable
            ``progress(done, total)`` called after each item.
        desc: Label of the bar.
        lines: Without tqdm, print one ``desc: i/total`` line per item to stderr.
        **tqdm_options: More tqdm options (default ``leave=False``).

    Returns:
        An iterator over ``iterable``.
    """
    if not progress:
        yield from iterable
        return
    if callable(progress):
        for i, item in enumerate(iterable):
            yield item
            progress(i + 1, total)
        return
    bar = progress_bar(total=total, desc=desc, **{"leave": False, **tqdm_options})
    if bar is None:
        for i, item in enumerate(iterable, start=1):
            if lines:
                print(f"{desc}: {i}/{total}", file=sys.stderr, flush=True)
            yield item
        return
    with bar:
        for item in iterable:
            yield item
            bar.update(1)


def progress_items(
    items: Sequence[Any], desc: str, quiet: bool, unit: str = "batch"
) -> Iterator[Any]:
    """A command's progress over ``items``: a bar on stderr, or one line per item."""
    return progress_iter(
        items,
        len(items),
        not quiet,
        desc,
        lines=True,
        unit=unit,
        leave=True,
        file=sys.stderr,
        dynamic_ncols=True,
    )
