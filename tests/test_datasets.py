"""Tests for tf_clrp.datasets: shards, manifest, resume, bounded memory, I/O errors, strategies.

The distribution tests run in a subprocess: the two logical CPU devices they need must be
configured before TensorFlow initialises its devices.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import subprocess
import sys
import textwrap
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pytest
import tensorflow as tf

import tf_clrp
from tf_clrp import datasets
from tf_clrp.datasets import (
    DatasetExplanation,
    ExplanationStorageError,
    ResumeMismatchError,
    explain_dataset,
    load_explanations,
)

REPO = Path(__file__).resolve().parents[1]
N_CLASSES = 5


def tiny_model() -> keras.Model:
    keras.utils.set_random_seed(0)
    return keras.Sequential(
        [
            keras.Input((6, 6, 2)),
            keras.layers.Conv2D(3, 3, activation="relu"),
            keras.layers.Flatten(),
            keras.layers.Dense(N_CLASSES),
        ]
    )


@pytest.fixture(scope="module")
def model() -> keras.Model:
    return tiny_model()


@pytest.fixture(scope="module")
def lrp(model: keras.Model) -> tf_clrp.Analyzer:
    return tf_clrp.create_analyzer("lrp.z_plus", model)


@pytest.fixture(scope="module")
def clrp(model: keras.Model) -> tf_clrp.Analyzer:
    return tf_clrp.create_analyzer("clrp", model)


def images(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, 6, 6, 2)).astype(np.float32)


def batches(x: np.ndarray, size: int, consumed: list[int] | None = None) -> Iterator[np.ndarray]:
    """A generator of numpy batches (deterministic order), counting what it yields."""
    for start in range(0, len(x), size):
        if consumed is not None:
            consumed.append(start)
        yield x[start : start + size]


def count_calls(analyzer: Any, fail_at: int | None = None) -> list[int]:
    """Replaces ``analyzer.analyze`` by a counting wrapper (raising at call ``fail_at``)."""
    calls: list[int] = []
    original = type(analyzer).analyze

    def analyze(x: Any, *args: Any, **kwargs: Any) -> Any:
        if fail_at is not None and len(calls) == fail_at:
            raise KeyboardInterrupt("simulated interruption")
        calls.append(len(x))
        return original(analyzer, x, *args, **kwargs)

    analyzer.analyze = analyze
    return calls


def files(folder: Path) -> list[str]:
    return sorted(os.listdir(folder))


# ---------------------------------------------------------------------------- layout
def test_shards_manifest_and_reader(lrp: Any, model: keras.Model, tmp_path: Path) -> None:
    x = images(70)
    y = np.arange(70) % N_CLASSES
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)  # batches straddle shards
    result = explain_dataset(lrp, ds, tmp_path, shard_size=32, batch_size=8, progress=False)

    assert isinstance(result, DatasetExplanation)
    assert files(tmp_path) == [
        "manifest.json",
        "shard_00000.npz",
        "shard_00001.npz",
        "shard_00002.npz",
    ]
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["complete"] and manifest["completed"] == 70
    assert [(s["start"], s["stop"]) for s in manifest["shards"]] == [(0, 32), (32, 64), (64, 70)]
    assert manifest["analyzer"]["class"] == "Propagation"
    assert manifest["analyzer"]["name"] == "lrp.z_plus"
    assert manifest["analyzer"]["options"]["seed"] == "value"
    assert manifest["sample_shape"] == [6, 6, 2] and manifest["dtype"] == "float32"
    assert manifest["fields"] == ["maps", "selection", "index"]
    assert manifest["neuron_selection"] == "max_activation"

    with np.load(tmp_path / "shard_00001.npz") as shard:
        assert set(shard.files) == {"maps", "selection", "index", "metadata"}
        assert shard["maps"].shape == (32, 6, 6, 2)
        np.testing.assert_array_equal(shard["index"], np.arange(32, 64))
        # "max_activation" is stored as the class it resolved to
        np.testing.assert_array_equal(
            shard["selection"], np.asarray(model(x[32:64])).argmax(axis=1)
        )
        assert json.loads(str(shard["metadata"]))["start"] == 32

    loaded = load_explanations(tmp_path)
    assert len(loaded) == 70 and loaded.complete and "70 in 3 shard(s)" in loaded.summary()
    np.testing.assert_allclose(loaded.maps, lrp.analyze(x), atol=1e-6)
    assert [len(s["maps"]) for s in loaded] == [32, 32, 6]
    np.testing.assert_array_equal(loaded.concatenate(["index"])["index"], np.arange(70))


def test_npy_format_parts_and_unbatched_dataset(clrp: Any, tmp_path: Path) -> None:
    x = images(21)
    ds = tf.data.Dataset.from_tensor_slices(x)  # unbatched samples
    result = explain_dataset(
        clrp,
        ds,
        tmp_path,
        shard_size=10,
        batch_size=4,
        format="npy",
        progress=False,
        analyze_kwargs={"return_parts": True},
        neuron_selection=2,
    )
    assert files(tmp_path) == ["manifest.json", "shard_00000", "shard_00001", "shard_00002"]
    assert sorted(os.listdir(tmp_path / "shard_00002")) == [
        "difference.npy",
        "dual.npy",
        "index.npy",
        "maps.npy",
        "metadata.npy",
        "selection.npy",
        "target.npy",
    ]
    reference = clrp.analyze(x, neuron_selection=2, return_parts=True)
    shards = list(result.iter_shards(["maps", "dual"], mmap=True))
    assert isinstance(shards[0]["maps"], np.memmap)
    everything = result.concatenate()
    np.testing.assert_allclose(everything["maps"], reference.contrastive, atol=1e-6)
    np.testing.assert_allclose(everything["dual"], reference.dual, atol=1e-6)
    np.testing.assert_array_equal(everything["selection"], 2)


@pytest.mark.parametrize("one_hot", [False, True])
def test_labels_as_selection(lrp: Any, tmp_path: Path, one_hot: bool) -> None:
    x = images(12, seed=1)
    y = (np.arange(12) * 3) % N_CLASSES
    labels = np.eye(N_CLASSES, dtype=np.float32)[y] if one_hot else y
    ds = tf.data.Dataset.from_tensor_slices({"image": x, "label": labels}).batch(5)
    result = explain_dataset(
        lrp, ds, tmp_path, neuron_selection="labels", shard_size=8, batch_size=4, progress=False
    )
    data = result.concatenate()
    np.testing.assert_array_equal(data["selection"], y)
    np.testing.assert_allclose(data["maps"], lrp.analyze(x, neuron_selection=y), atol=1e-6)


def test_other_selections_and_errors(lrp: Any, tmp_path: Path) -> None:
    x = images(9, seed=2)
    per_sample = np.arange(9) % N_CLASSES
    result = explain_dataset(
        lrp,
        x,
        tmp_path / "a",
        neuron_selection=per_sample,
        shard_size=4,
        batch_size=3,
        progress=False,
    )
    np.testing.assert_allclose(result.maps, lrp.analyze(x, neuron_selection=per_sample), atol=1e-6)
    result = explain_dataset(
        lrp,
        batches(x, 2),
        tmp_path / "b",
        shard_size=4,
        neuron_selection=lambda imgs, labels, index: index % 2,
        progress=False,
    )
    np.testing.assert_array_equal(result.concatenate()["selection"], np.arange(9) % 2)
    with pytest.raises(tf_clrp.SelectionError, match="labels"):
        explain_dataset(lrp, x, tmp_path / "c", neuron_selection="labels", progress=False)
    with pytest.raises(ValueError, match="format"):
        explain_dataset(lrp, x, tmp_path / "d", format="hdf5")
    with pytest.raises(FileNotFoundError, match="manifest"):
        load_explanations(tmp_path / "nothing")


def test_any_object_with_analyze(model: keras.Model, tmp_path: Path) -> None:
    occlusion = tf_clrp.create_analyzer("occlusion", model, window=3, stride=3)
    x, y = images(7, seed=6), np.arange(7) % N_CLASSES
    result = explain_dataset(
        occlusion,
        batches(x, 3),
        tmp_path,
        neuron_selection=y,
        shard_size=4,
        batch_size=4,
        progress=False,
    )
    np.testing.assert_allclose(result.maps, occlusion.analyze(x, neuron_selection=y), atol=1e-6)
    np.testing.assert_array_equal(result.concatenate()["selection"], y)
    description = result.manifest["analyzer"]
    assert description["class"] == "Occlusion" and description["name"] == "occlusion"
    assert description["options"]["window"] == 3 and description["options"]["stride"] == 3
    # an object that cannot resolve "max_activation" keeps the arg-max code
    result = explain_dataset(occlusion, x, tmp_path / "argmax", progress=False)
    np.testing.assert_array_equal(result.concatenate()["selection"], -1)


@pytest.mark.parametrize(
    "name, options, kwargs",
    [
        ("lrp.z_plus", {}, {}),
        ("clrp", {}, {"return_parts": True}),
        ("integrated_gradients", {"steps": 3}, {}),
        ("lrp.epsilon", {"neuron_selection_unit": "channel", "layer_name": "conv"}, {}),
    ],
)
def test_engine_hooks(
    name: str, options: dict[str, Any], kwargs: dict[str, Any], tmp_path: Path
) -> None:
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((6, 6, 2)),
            keras.layers.Conv2D(3, 3, activation="relu", name="conv"),
            keras.layers.Flatten(),
            keras.layers.Dense(N_CLASSES),
        ]
    )
    analyzer = tf_clrp.create_analyzer(name, model, **options)
    assert analyzer.name == name and analyzer.options == options
    x = images(5, seed=9)
    array, selection = analyzer.prepare(x, "max_activation")
    assert array.dtype == np.float32
    np.testing.assert_array_equal(selection.indices, -1)
    resolved = analyzer.resolve_max_activation(array, selection)
    if "layer_name" in options:  # channel units: the channel with the largest sum
        hidden = keras.Model(model.inputs, model.get_layer("conv").output)
        expected = np.asarray(hidden(x)).sum(axis=(1, 2)).argmax(axis=1)
    else:
        expected = np.asarray(model(x)).argmax(axis=1)
    np.testing.assert_array_equal(resolved.indices, expected)
    assert analyzer.resolve_max_activation(array, resolved) is resolved

    reference = analyzer.analyze(x, **kwargs)
    step = analyzer.replica_step(array, selection, **kwargs)
    explicit = analyzer.analyze(x, neuron_selection=resolved.indices, **kwargs)
    for result in (step.run(), explicit):
        for field in ("target", "dual", "contrastive", "difference") if kwargs else [None]:
            got = getattr(result, field) if field else result
            want = getattr(reference, field) if field else reference
            np.testing.assert_allclose(got, want, atol=1e-6)

    stored = explain_dataset(
        analyzer, x, tmp_path, shard_size=4, batch_size=2, progress=False, analyze_kwargs=kwargs
    )
    data = stored.concatenate()
    np.testing.assert_array_equal(data["selection"], expected)
    maps = reference.contrastive if kwargs else reference
    np.testing.assert_allclose(data["maps"], maps, atol=1e-6)
    assert stored.manifest["analyzer"]["options"]["neuron_selection_mode"] == "max_activation"
    compiled = analyzer._parts if name == "clrp" else analyzer._by_index
    assert compiled.experimental_get_tracing_count() == 1


def test_unsplittable_analyzer(model: keras.Model) -> None:
    class Constant(tf_clrp.Analyzer):
        def _explain(self, x: np.ndarray, selection: Any, **kwargs: Any) -> np.ndarray:
            return np.ones_like(x)

    analyzer = Constant(model)
    x = images(2)
    array, selection = analyzer.prepare(x, 1)
    with pytest.raises(NotImplementedError):
        analyzer.replica_step(array, selection)
    with pytest.raises(NotImplementedError):
        analyzer.resolve_max_activation(*analyzer.prepare(x))
    assert analyzer.resolve_max_activation(array, selection) is selection
    np.testing.assert_array_equal(analyzer.analyze(x), 1.0)

    from tf_clrp._distribute import DistributedRunner

    runner = DistributedRunner(tf.distribute.OneDeviceStrategy("/cpu:0"))
    with pytest.warns(RuntimeWarning, match="cannot be split"):
        np.testing.assert_array_equal(runner.analyze(analyzer, x, None), 1.0)
    assert runner.analyze(analyzer, x[:0], None).shape == (0, 6, 6, 2)


# ---------------------------------------------------------------------------- resume
def test_resume_after_interruption(lrp: Any, tmp_path: Path) -> None:
    x = images(48, seed=3)
    full = explain_dataset(
        lrp, batches(x, 5), tmp_path / "full", shard_size=16, batch_size=8, progress=False
    ).maps

    out = tmp_path / "run"
    count_calls(lrp, fail_at=5)  # 6 chunks of 8: shards 0 and 1 done, shard 2 half done
    try:
        with pytest.raises(KeyboardInterrupt):
            explain_dataset(lrp, batches(x, 5), out, shard_size=16, batch_size=8, progress=False)
        manifest = json.loads((out / "manifest.json").read_text())
        assert [s["file"] for s in manifest["shards"]] == ["shard_00000.npz", "shard_00001.npz"]
        assert not manifest["complete"] and manifest["completed"] == 32
        assert files(out) == ["manifest.json", "shard_00000.npz", "shard_00001.npz"]
        assert load_explanations(out).n_samples == 32
        before = {f: (out / f).stat().st_mtime_ns for f in ("shard_00000.npz", "shard_00001.npz")}

        calls = count_calls(lrp)
        consumed: list[int] = []
        result = explain_dataset(
            lrp, batches(x, 5, consumed), out, shard_size=16, batch_size=8, progress=False
        )
        assert calls == [8, 8]  # only the unfinished shard is explained again
        assert result.computed_shards == 1 and result.skipped_shards == 2
        assert consumed == list(range(0, 48, 5))  # the iterator was advanced, not re-run
        after = {f: (out / f).stat().st_mtime_ns for f in before}
        assert after == before
        np.testing.assert_array_equal(result.maps, full)
        np.testing.assert_array_equal(result.concatenate()["index"], np.arange(48))

        again = explain_dataset(
            lrp, batches(x, 5), out, shard_size=16, batch_size=8, progress=False
        )
        assert calls == [8, 8] and again.computed_shards == 0 and again.complete
    finally:
        del lrp.analyze


def test_resume_checks_settings(lrp: Any, tmp_path: Path) -> None:
    x = images(6, seed=4)
    explain_dataset(lrp, x, tmp_path, shard_size=4, progress=False)
    with pytest.raises(ResumeMismatchError, match="shard_size"):
        explain_dataset(lrp, x, tmp_path, shard_size=3, progress=False)
    (tmp_path / "shard_00009.npz").write_bytes(b"stale")  # unrecorded: removed on restart
    result = explain_dataset(lrp, x, tmp_path, shard_size=3, progress=False, resume=False)
    assert files(tmp_path) == ["manifest.json", "shard_00000.npz", "shard_00001.npz"]
    assert result.computed_shards == 2


# ---------------------------------------------------------------------------- memory
def test_peak_memory_does_not_grow_with_dataset_length(tmp_path: Path) -> None:
    keras.utils.set_random_seed(0)
    wide = keras.Sequential(
        [keras.Input((16, 16, 3)), keras.layers.Flatten(), keras.layers.Dense(N_CLASSES)]
    )
    analyzer = tf_clrp.create_analyzer("gradient", wide)
    sample_bytes = 16 * 16 * 3 * 4

    def peak(n_samples: int, out: Path, measure: bool = True) -> int:
        rng = np.random.default_rng(0)
        data = (
            rng.normal(size=(16, 16, 16, 3)).astype(np.float32) for _ in range(n_samples // 16)
        )  # made on the fly, never all in memory
        if measure:
            tracemalloc.start()
        try:
            explain_dataset(analyzer, data, out, shard_size=32, batch_size=16, progress=False)
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    peak(32, tmp_path / "warm-up", measure=False)  # traces the tf.function
    small = peak(64, tmp_path / "small")
    large = peak(512, tmp_path / "large")
    held_if_unbounded = (512 - 64) * sample_bytes  # 1.4 MB more maps
    assert large - small < 0.1 * held_if_unbounded, (small, large)
    assert small < 8 * 32 * sample_bytes  # a few shards' worth at most


# ---------------------------------------------------------------------------- I/O errors
def test_unwritable_folder(lrp: Any, tmp_path: Path) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    with pytest.raises(ExplanationStorageError, match="cannot write"):
        explain_dataset(lrp, images(4), blocker / "out", progress=False)
    if os.geteuid() != 0:  # root ignores permissions
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o500)
        try:
            with pytest.raises(ExplanationStorageError, match="permission denied"):
                explain_dataset(lrp, images(4), locked, progress=False)
        finally:
            locked.chmod(0o700)


@pytest.mark.parametrize("fmt", ["npz", "npy"])
def test_disk_full_leaves_no_partial_shard(
    lrp: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fmt: str
) -> None:
    x = images(12, seed=5)
    writes = []
    name = "savez" if fmt == "npz" else "save"  # numpy's writers, as the shards use them
    real = getattr(np, name)

    def failing(file: Any, *args: Any, **kwargs: Any) -> None:
        writes.append(1)
        if len(writes) > (1 if fmt == "npz" else 4):  # the second shard
            file.write(b"half a shard")
            raise OSError(errno.ENOSPC, "No space left on device")
        real(file, *args, **kwargs)

    monkeypatch.setattr(np, name, failing)
    with pytest.raises(ExplanationStorageError, match="disk is full") as info:
        explain_dataset(lrp, x, tmp_path, shard_size=5, batch_size=5, format=fmt, progress=False)
    assert info.value.errno == errno.ENOSPC
    assert files(tmp_path) == ["manifest.json", "shard_00000" + (".npz" if fmt == "npz" else "")]
    assert load_explanations(tmp_path).n_samples == 5

    monkeypatch.setattr(np, name, real)
    result = explain_dataset(
        lrp, x, tmp_path, shard_size=5, batch_size=5, format=fmt, progress=False
    )
    assert result.complete and result.skipped_shards == 1
    np.testing.assert_allclose(result.maps, lrp.analyze(x), atol=1e-6)


def test_manifest_failure_unrecords_the_shard(
    lrp: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = datasets._write_json
    calls = []

    def failing(path: Path, content: dict[str, Any]) -> None:
        calls.append(1)
        if len(calls) == 3:  # initial manifest, shard 0, then shard 1 fails
            raise OSError(errno.ENOSPC, "No space left on device")
        real(path, content)

    monkeypatch.setattr(datasets, "_write_json", failing)
    with pytest.raises(ExplanationStorageError, match="manifest.json"):
        explain_dataset(lrp, images(12), tmp_path, shard_size=5, progress=False)
    assert files(tmp_path) == ["manifest.json", "shard_00000.npz"]


# ---------------------------------------------------------------------------- strategies
DISTRIBUTED = textwrap.dedent("""
    import json, os, sys
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import numpy as np
    import tf_clrp
    from tf_clrp._distribute import DistributedRunner
    from tf_clrp.datasets import explain_dataset
    from test_datasets import images, tiny_model

    out = {out!r}
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    model = tiny_model()
    x, y = images(23, seed=7), np.arange(23) % 5
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(6)
    report = {{"replicas": strategy.num_replicas_in_sync, "errors": {{}}}}
    cases = [("lrp.z_plus", {{}}, {{}}), ("clrp", {{}}, {{"return_parts": True}}),
             ("clrp@bfloat16", {{"precision": "bfloat16"}}, {{"return_parts": True}}),
             ("integrated_gradients", {{"steps": 3}}, {{}})]
    for name, options, kwargs in cases:
        analyzer = tf_clrp.create_analyzer(name.split("@")[0], model, **options)
        single = explain_dataset(analyzer, ds, os.path.join(out, name + "-1"), shard_size=8,
                                 batch_size=7, neuron_selection="labels", progress=False,
                                 analyze_kwargs=kwargs).concatenate()
        multi = explain_dataset(analyzer, ds, os.path.join(out, name + "-2"), shard_size=8,
                                batch_size=7, neuron_selection="labels", progress=False,
                                analyze_kwargs=kwargs, strategy=strategy).concatenate()
        report["errors"][name] = max(float(np.abs(single[k] - multi[k]).max())
                                     for k in single)
    # the replica computation is placed on both devices of the strategy
    analyzer = tf_clrp.create_analyzer("lrp.z_plus", model)
    runner = DistributedRunner(strategy)
    step = analyzer.replica_step(*analyzer.prepare(x[:4], "max_activation"))
    runner.run_step(step)
    args = [runner._distribute(a, 2) for a in step.inputs]
    graph = runner._compile(step).get_concrete_function(*args).graph
    report["devices"] = sorted({{op.device.split("device:")[-1] for op in graph.get_operations()
                                if op.device}})
    print("REPORT" + json.dumps(report))
""")


def run_python(
    code: str, timeout: float = 120, env: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    environment = {
        **os.environ,
        "TF_CPP_MIN_LOG_LEVEL": "3",
        "CUDA_VISIBLE_DEVICES": "",
        "PYTHONPATH": os.pathsep.join(
            [str(REPO), str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")]
        ),
        **(env or {}),
    }
    return subprocess.Popen(
        [sys.executable, "-c", code],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environment,
    )


def report_of(process: subprocess.Popen[str], timeout: float = 120) -> dict[str, Any]:
    stdout, stderr = process.communicate(timeout=timeout)
    lines = [line for line in stdout.splitlines() if line.startswith("REPORT")]
    assert process.returncode == 0 and lines, stderr[-3000:]
    return json.loads(lines[-1][len("REPORT") :])


def test_mirrored_strategy_gives_the_single_device_maps(tmp_path: Path) -> None:
    code = DISTRIBUTED.format(tests=str(Path(__file__).parent), out=str(tmp_path))
    report = report_of(run_python(code))
    assert report["replicas"] == 2
    for name, error in report["errors"].items():
        assert error < 1e-5, (name, error)
    assert {"CPU:0", "CPU:1"} <= set(report["devices"])


MULTI_WORKER = textwrap.dedent("""
    import json, os, sys
    import tensorflow as tf
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    import numpy as np
    import tf_clrp
    from tf_clrp.datasets import explain_dataset
    from test_datasets import images, tiny_model

    analyzer = tf_clrp.create_analyzer("clrp", tiny_model())
    x = images(11, seed=8)
    result = explain_dataset(analyzer, tf.data.Dataset.from_tensor_slices(x), {out!r},
                             shard_size=4, batch_size=3, progress=False, strategy=strategy)
    error = -1.0
    if strategy.extended.should_checkpoint:
        error = float(np.abs(result.maps - analyzer.analyze(x)).max())
    print("REPORT" + json.dumps({{"replicas": strategy.num_replicas_in_sync, "error": error,
                                 "writer": bool(strategy.extended.should_checkpoint)}}))
""")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("localhost", 0))
        return int(sock.getsockname()[1])


@pytest.mark.slow
def test_multi_worker_strategy_on_localhost(tmp_path: Path) -> None:
    workers = [f"localhost:{free_port()}" for _ in range(2)]
    code = MULTI_WORKER.format(tests=str(Path(__file__).parent), out=str(tmp_path / "out"))
    processes = [
        run_python(
            code,
            env={
                "TF_CONFIG": json.dumps(
                    {"cluster": {"worker": workers}, "task": {"type": "worker", "index": i}}
                )
            },
        )
        for i in range(2)
    ]
    reports = [report_of(p, timeout=300) for p in processes]
    assert [r["replicas"] for r in reports] == [2, 2]
    assert [r["writer"] for r in reports] == [True, False]
    assert 0 <= reports[0]["error"] < 1e-5
    assert load_explanations(tmp_path / "out").n_samples == 11
