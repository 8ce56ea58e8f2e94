"""Keras callback that explains fixed samples during training and saves the heatmaps.

``HeatmapCallback`` builds its analyzers once, lazily at the first event; the analyzers read
the model's live variables, so later events explain the current weights without rebuilding.
It never changes training: it draws no random numbers from Keras/TensorFlow/NumPy global
generators, runs the model in inference mode only, writes no variables, and turns every
failure into a ``warnings.warn`` instead of an exception.
"""

from __future__ import annotations

import importlib.util
import os
import time
import warnings
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np

from tf_clrp import visualize

#: Methods explained when none are given.
DEFAULT_METHODS = ("gradient", "lrp.epsilon_plus", "clrp")

MethodSpec = str | tuple[str, dict[str, Any]]


#: The notice given once when ``tensorboard="auto"`` finds no TensorBoard.
NO_TENSORBOARD_NOTICE = (
    "HeatmapCallback: the tensorboard package is not installed (TensorFlow >= 2.21 no longer "
    "installs it), so heatmaps go to PNG files in {log_dir} only. For TensorBoard images: "
    "pip install tensorboard (or 'tf_clrp[tensorboard]'); tensorboard=False silences this."
)


def tensorboard_available() -> bool:
    """True if the ``tensorboard`` package (needed by ``tf.summary.image``) is importable."""
    return importlib.util.find_spec("tensorboard") is not None


def upscale_nearest(images: np.ndarray, min_side: int) -> np.ndarray:
    """Enlarges a batch of uint8 images by an integer factor (nearest neighbour) so that
    their shorter side reaches ``min_side``; larger images are returned unchanged.

    Args:
        images: uint8 (N, H, W, 3).
        min_side: Wanted length of the shorter side in pixels.

    Returns:
        uint8 (N, H·f, W·f, 3) with f = ceil(min_side / min(H, W)), or ``images``.
    """
    factor = -(-int(min_side) // min(images.shape[1:3]))
    if factor <= 1:
        return images
    return np.repeat(np.repeat(images, factor, axis=1), factor, axis=2)


def _parse_methods(methods: Sequence[MethodSpec]) -> list[tuple[str, str, dict[str, Any]]]:
    """[(column label, analyzer name, kwargs)], labels made unique."""
    if isinstance(methods, str) or (
        isinstance(methods, tuple) and len(methods) == 2 and isinstance(methods[1], dict)
    ):
        methods = [methods]  # a single method
    parsed: list[tuple[str, str, dict[str, Any]]] = []
    for spec in methods:
        if isinstance(spec, str):
            name, kwargs = spec, {}
        elif (
            isinstance(spec, (tuple, list))
            and len(spec) == 2
            and isinstance(spec[0], str)
            and isinstance(spec[1], dict)
        ):
            name, kwargs = spec[0], dict(spec[1])
        else:
            raise TypeError(
                f"each method must be an analyzer name or a (name, kwargs dict) pair, got {spec!r}"
            )
        label = name
        if kwargs:
            label = f"{name}({', '.join(f'{k}={v}' for k, v in sorted(kwargs.items()))})"
        taken = {p[0] for p in parsed}
        base, k = label, 2
        while label in taken:
            label, k = f"{base} #{k}", k + 1
        parsed.append((label, name, kwargs))
    if not parsed:
        raise ValueError("methods is empty; give at least one analyzer name")
    return parsed


def _per_sample_ints(values: int | Sequence[int] | None, n: int, what: str) -> np.ndarray | None:
    """None, or one int per sample (a single int is repeated)."""
    if values is None:
        return None
    array = np.asarray(values)
    if array.dtype.kind not in "iu":
        raise TypeError(f"{what} must be ints, got {values!r}")
    array = np.broadcast_to(array, (n,)) if array.ndim == 0 else array
    if array.shape != (n,):
        raise ValueError(f"got {array.size} {what} for {n} images")
    return array.astype(np.int64)


class HeatmapCallback(keras.callbacks.Callback):
    """Saves relevance heatmaps of fixed samples during ``model.fit``.

    On each chosen event it explains ``images`` with every method and writes a comparison
    grid ``log_dir/heatmaps_epoch{E:04d}.png`` (epoch events) or
    ``log_dir/heatmaps_epoch{E:04d}_batch{B}.png`` (batch events), with 1-based epoch and
    batch numbers like ``ModelCheckpoint``. Existing files are never overwritten (a
    ``_run2``, ``_run3``, ... suffix is added). With TensorBoard, the grid and per-method
    overlays also go to ``log_dir/heatmaps`` as ``tf.summary.image`` (tags
    ``epoch/<method>``, ``epoch/grid``, ``batch/...``; steps = epoch number or global batch).

    Args:
        images: Sample inputs in the model's input space, (N, *input_shape), numpy.
        classes: Explained class per sample: None (the model's current prediction at each
            event), one int for all, or N ints.
        methods: Analyzer names or ``(name, kwargs)`` pairs, e.g.
            ``["gradient", ("lrp.epsilon", {"epsilon": 0.1}), "clrp"]``.
        log_dir: Output folder (created when first written).
        every_n_epochs: Explain after every n-th epoch (None: never at epoch ends).
        every_n_batches: Explain after every n-th training batch, counted over the whole
            run (None: never at batch ends).
        tensorboard: True (require the ``tensorboard`` package), False, or "auto" (use it
            when importable; a one-time warning says so when it is not installed).
        class_names: Optional names of the model's classes for the grid labels.
        labels: Optional true class per sample (one int or N ints), shown next to the
            explained class in the grid's row labels.
        display_images: Optional images to show in the grid instead of ``images`` (e.g. the
            uint8 photos before preprocessing); default: ``images`` min-max scaled.
        overlay_alpha: None: plain heatmaps; a float: heatmaps blended over the images.
        percentile: Colour saturation percentile of |R| (see ``visualize.normalize``).
        batch_size: Chunk size for the explanations (None: all samples at once).
        use_tf_function: Compile the analyzers with ``tf.function`` (the first event pays the
            tracing, later events are fast; False runs eagerly, better for few events).
            A method's own ``use_tf_function`` kwarg wins.
        cell_size: Side of one grid cell in pixels (small inputs are enlarged, in the grid
            and in the TensorBoard images).
        verbose: Print the written file names.

    Attributes:
        timings: Seconds spent per event, ``[(epoch, batch or None, seconds), ...]``.
        written: Paths of the PNG files written.
        failed: Methods that failed (label → error message); they are skipped afterwards.
    """

    def __init__(
        self,
        images: Any,
        classes: int | Sequence[int] | None = None,
        methods: Sequence[MethodSpec] = DEFAULT_METHODS,
        log_dir: str | os.PathLike[str] = "heatmaps",
        every_n_epochs: int | None = 1,
        every_n_batches: int | None = None,
        tensorboard: bool | str = "auto",
        class_names: Sequence[str] | None = None,
        labels: int | Sequence[int] | None = None,
        display_images: Any = None,
        overlay_alpha: float | None = None,
        percentile: float | None = visualize.DEFAULT_PERCENTILE,
        batch_size: int | None = None,
        use_tf_function: bool = True,
        cell_size: int = 128,
        verbose: int = 0,
    ) -> None:
        super().__init__()
        array = np.asarray(images.numpy() if hasattr(images, "numpy") else images)
        if array.ndim < 2 or len(array) == 0:
            raise ValueError(
                f"images must be a non-empty batch (N, *input_shape); got shape {array.shape}"
            )
        if array.dtype.kind not in "fiub":
            raise TypeError(f"images must be numeric, got dtype {array.dtype}")
        self.images = array
        n = len(array)
        self.classes: np.ndarray | None = _per_sample_ints(classes, n, "classes")
        self.labels: np.ndarray | None = _per_sample_ints(labels, n, "labels")
        self.methods = _parse_methods(methods)
        for what, value in (
            ("every_n_epochs", every_n_epochs),
            ("every_n_batches", every_n_batches),
        ):
            if value is not None and (not isinstance(value, (int, np.integer)) or value < 1):
                raise ValueError(f"{what} must be a positive int or None, got {value!r}")
        if every_n_epochs is None and every_n_batches is None:
            raise ValueError("set every_n_epochs and/or every_n_batches; both are None")
        self.every_n_epochs = every_n_epochs
        self.every_n_batches = every_n_batches
        if tensorboard not in (True, False, "auto"):
            raise ValueError(f"tensorboard must be True, False or 'auto', got {tensorboard!r}")
        if tensorboard is True and not tensorboard_available():
            raise ImportError(
                "HeatmapCallback(tensorboard=True) needs the tensorboard package: "
                "pip install 'tf_clrp[tensorboard]' (or tensorboard=False / 'auto')"
            )
        self.use_tensorboard = tensorboard is True or (
            tensorboard == "auto" and tensorboard_available()
        )
        self.log_dir = os.fspath(log_dir)
        if tensorboard == "auto" and not self.use_tensorboard:
            warnings.warn(
                NO_TENSORBOARD_NOTICE.format(log_dir=self.log_dir), UserWarning, stacklevel=2
            )
        self.class_names = None if class_names is None else [str(c) for c in class_names]
        if display_images is not None:
            shown = np.asarray(display_images)
            if len(shown) != n:
                raise ValueError(f"got {len(shown)} display_images for {n} images")
            self.display_images = shown
        else:
            self.display_images = array
        self.overlay_alpha = overlay_alpha
        self.percentile = percentile
        self.batch_size = batch_size
        self.use_tf_function = bool(use_tf_function)
        self.cell_size = int(cell_size)
        self.verbose = verbose
        self.timings: list[tuple[int, int | None, float]] = []
        self.written: list[str] = []
        self.failed: dict[str, str] = {}
        #: Method label -> its analyzer, built on first use and reused (it reads the live
        #: weights).
        self.analyzers: dict[str, Any] = {}
        self._writer: Any = None
        self._epoch = 0
        self._global_batch = 0
        self._warned_existing = False

    # ------------------------------------------------------------------ keras hooks
    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        """Remembers the current epoch (0-based, as Keras passes it)."""
        self._epoch = int(epoch)

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        """Explains after every ``every_n_batches``-th batch."""
        self._global_batch += 1
        if self.every_n_batches and self._global_batch % self.every_n_batches == 0:
            self._event(self._epoch, int(batch))

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        """Explains after every ``every_n_epochs``-th epoch."""
        if self.every_n_epochs and (int(epoch) + 1) % self.every_n_epochs == 0:
            self._event(int(epoch), None)

    def on_train_end(self, logs: dict | None = None) -> None:
        """Closes the TensorBoard writer."""
        if self._writer is not None:
            try:
                self._writer.close()
            except Exception as error:  # noqa: BLE001 - never crash training
                warnings.warn(
                    f"HeatmapCallback: closing the TensorBoard writer failed: "
                    f"{type(error).__name__}: {error}",
                    RuntimeWarning,
                    stacklevel=2,
                )
            self._writer = None

    # ------------------------------------------------------------------ work
    def explain(self) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Explains the samples with the current weights (also usable outside ``fit``).

        Returns:
            ``(maps by method label, explained class per sample)``; failing methods are
            left out with a warning.
        """
        import tf_clrp
        from tf_clrp.registry import entry

        targets = self._targets()
        maps: dict[str, np.ndarray] = {}
        for label, name, kwargs in self.methods:
            if label in self.failed:
                continue
            try:
                analyzer = self.analyzers.get(label)
                if analyzer is None:
                    options = dict(kwargs)
                    if entry(name).takes("use_tf_function"):
                        options = {"use_tf_function": self.use_tf_function, **kwargs}
                    analyzer = tf_clrp.create_analyzer(name, self.model, **options)
                    self.analyzers[label] = analyzer
                relevance = analyzer.analyze(
                    self.images,
                    neuron_selection=[int(t) for t in targets],
                    batch_size=self.batch_size,
                )
                maps[label] = np.asarray(relevance, dtype=np.float32)
            except Exception as error:  # noqa: BLE001 - never crash training
                message = f"{type(error).__name__}: {error}"
                self.failed[label] = message
                warnings.warn(
                    f"HeatmapCallback: method {label!r} failed and is skipped from now on: "
                    f"{message}",
                    RuntimeWarning,
                    stacklevel=2,
                )
        return maps, targets

    def _targets(self) -> np.ndarray:
        if self.classes is not None:
            return self.classes
        size = self.batch_size or len(self.images)
        outputs = []
        for start in range(0, len(self.images), size):
            out = self.model(self.images[start : start + size], training=False)
            if isinstance(out, (list, tuple)):
                out = out[0]
            out = np.asarray(out)
            outputs.append(out.reshape(len(out), -1))
        return np.concatenate(outputs).argmax(axis=1).astype(np.int64)

    def _event(self, epoch: int, batch: int | None) -> None:
        start = time.perf_counter()
        where = f"epoch {epoch + 1}" + ("" if batch is None else f", batch {batch + 1}")
        try:
            maps, targets = self.explain()
            if maps:
                self._write(maps, targets, epoch, batch)
        except Exception as error:  # noqa: BLE001 - never crash training
            warnings.warn(
                f"HeatmapCallback: could not explain or write heatmaps at {where}: "
                f"{type(error).__name__}: {error}",
                RuntimeWarning,
                stacklevel=2,
            )
        self.timings.append(
            (epoch + 1, None if batch is None else batch + 1, time.perf_counter() - start)
        )

    def _class_label(self, index: int) -> str:
        if self.class_names is not None and 0 <= index < len(self.class_names):
            return f"{self.class_names[index]} ({index})"
        return f"class {index}"

    def _row_label(self, sample: int, explained: int) -> str:
        if self.labels is None:
            return f"sample {sample}: {self._class_label(explained)}"
        return (
            f"sample {sample}: true {self._class_label(int(self.labels[sample]))}, "
            f"explains {self._class_label(explained)}"
        )

    def _write(
        self, maps: dict[str, np.ndarray], targets: np.ndarray, epoch: int, batch: int | None
    ) -> None:
        stem = f"heatmaps_epoch{epoch + 1:04d}" + ("" if batch is None else f"_batch{batch + 1}")
        title = f"epoch {epoch + 1}" + ("" if batch is None else f", batch {batch + 1}")
        grid = visualize.grid_image(
            self.display_images,
            maps,
            row_labels=[self._row_label(i, int(t)) for i, t in enumerate(targets)],
            title=title,
            cell=self.cell_size,
            overlay_alpha=self.overlay_alpha,
            percentile=self.percentile,
        )
        path = self._free_path(stem)
        visualize.save_png(grid, path, overwrite=False)
        self.written.append(path)
        if self.verbose:
            print(f"HeatmapCallback: wrote {path}")
        if self.use_tensorboard:
            self._summaries(maps, grid, epoch, batch)

    def _free_path(self, stem: str) -> str:
        path = os.path.join(self.log_dir, f"{stem}.png")
        run = 2
        while os.path.lexists(path):
            if not self._warned_existing:
                self._warned_existing = True
                warnings.warn(
                    f"HeatmapCallback: {path} exists (earlier run?); keeping it and writing "
                    f"this run's files with a _run<k> suffix",
                    RuntimeWarning,
                    stacklevel=3,
                )
            path = os.path.join(self.log_dir, f"{stem}_run{run}.png")
            run += 1
        return path

    def _summaries(
        self, maps: dict[str, np.ndarray], grid: np.ndarray, epoch: int, batch: int | None
    ) -> None:
        import tensorflow as tf

        if self._writer is None:
            self._writer = tf.summary.create_file_writer(os.path.join(self.log_dir, "heatmaps"))
        prefix, step = ("epoch", epoch + 1) if batch is None else ("batch", self._global_batch)
        shown = [visualize.to_rgb_uint8(img) for img in self.display_images]
        with self._writer.as_default():
            tf.summary.image(f"{prefix}/grid", grid[None], step=step)
            for label, relevance in maps.items():
                pictures = upscale_nearest(
                    np.stack(
                        [
                            visualize.overlay(
                                img, rel, self.overlay_alpha or 0.6, percentile=self.percentile
                            )
                            for img, rel in zip(shown, relevance)
                        ]
                    ),
                    self.cell_size,
                )
                tf.summary.image(
                    f"{prefix}/{label}", pictures, step=step, max_outputs=len(pictures)
                )
        self._writer.flush()


__all__ = [
    "DEFAULT_METHODS",
    "NO_TENSORBOARD_NOTICE",
    "HeatmapCallback",
    "tensorboard_available",
    "upscale_nearest",
]
