"""explain_dataset never mixes results: fingerprints, the folder lock, shard checksums,
owned files only, errors naming the global sample, short resume-mismatch messages.

Every test here fails on the tf_clrp of commit 209d9fa (before these checks existed).
"""

from __future__ import annotations

import errno
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pytest
import tensorflow as tf
from test_datasets import N_CLASSES, count_calls, files, images, tiny_model

import tf_clrp
from tf_clrp import datasets
from tf_clrp.datasets import (
    ExplanationStorageError,
    ResumeMismatchError,
    explain_dataset,
    load_explanations,
)
from tf_clrp.errors import InputError, SelectionError, TfClrpError

LOCK_MODULE = Path(__file__).resolve().parents[1] / "tf_clrp" / "datasets" / "_lock.py"


@pytest.fixture(scope="module")
def lrp() -> tf_clrp.Analyzer:
    """LRP-z+ of the tiny test model (which is ``lrp.model``)."""
    return tf_clrp.create_analyzer("lrp.z_plus", tiny_model())


def run(analyzer: Any, data: Any, out: Path, **kwargs: Any) -> Any:
    kwargs.setdefault("shard_size", 4)
    kwargs.setdefault("batch_size", 4)
    return explain_dataset(analyzer, data, out, progress=False, **kwargs)


def interrupted(analyzer: Any, data: Any, out: Path, fail_at: int = 1, **kwargs: Any) -> None:
    """A run stopped (KeyboardInterrupt) at its ``fail_at``-th analyze call."""
    count_calls(analyzer, fail_at=fail_at)
    try:
        with pytest.raises(KeyboardInterrupt):
            run(analyzer, data, out, **kwargs)
    finally:
        del analyzer.analyze


# ---------------------------------------------------------------------------- fingerprints
def test_retrained_model_does_not_resume(lrp: Any, tmp_path: Path) -> None:
    model = lrp.model
    x = images(12, seed=10)
    interrupted(tf_clrp.create_analyzer("lrp.z_plus", model), x, tmp_path, fail_at=1)
    assert load_explanations(tmp_path).n_samples == 4

    retrained = keras.models.clone_model(model)  # same architecture, other weights
    retrained.set_weights([w * 1.5 for w in model.get_weights()])
    retrained.name = model.name  # "functional"/"sequential" collide between models anyway
    with pytest.raises(ResumeMismatchError, match=r"model\.weights: differs") as info:
        run(tf_clrp.create_analyzer("lrp.z_plus", retrained), x, tmp_path)
    assert "architecture" not in str(info.value)
    assert load_explanations(tmp_path).n_samples == 4  # nothing was added

    # the same model built again (new auto-generated layer names, same weights) resumes
    again = tiny_model()
    assert again.layers[0].name != model.layers[0].name
    result = run(tf_clrp.create_analyzer("lrp.z_plus", again), x, tmp_path)
    assert result.complete and result.skipped_shards == 1 and result.computed_shards == 2


def test_architecture_change_does_not_resume(lrp: Any, tmp_path: Path) -> None:
    model = lrp.model
    x = images(8, seed=11)
    run(tf_clrp.create_analyzer("lrp.z_plus", model), x, tmp_path)
    keras.utils.set_random_seed(0)
    other = keras.Sequential(
        [
            keras.Input((6, 6, 2)),
            keras.layers.Conv2D(3, 3, activation="tanh"),
            keras.layers.Flatten(),
            keras.layers.Dense(N_CLASSES),
        ]
    )
    other.set_weights(model.get_weights())  # same weights, another activation
    with pytest.raises(ResumeMismatchError, match=r"model\.architecture: differs"):
        run(tf_clrp.create_analyzer("lrp.z_plus", other), x, tmp_path)


def selector(modulus: int) -> Any:
    return lambda images, labels, index: index % modulus


def test_selection_callables_are_told_apart(lrp: Any, tmp_path: Path) -> None:
    x = images(12, seed=12)
    interrupted(lrp, x, tmp_path, fail_at=1, neuron_selection=lambda images, labels, idx: idx % 2)
    with pytest.raises(ResumeMismatchError, match="neuron_selection"):
        run(lrp, x, tmp_path, neuron_selection=lambda images, labels, idx: idx % 3)

    interrupted(lrp, x, tmp_path / "closure", fail_at=1, neuron_selection=selector(2))
    with pytest.raises(ResumeMismatchError, match="neuron_selection"):
        run(lrp, x, tmp_path / "closure", neuron_selection=selector(3))
    # the same code with the same closure values is the same selection
    result = run(lrp, x, tmp_path / "closure", neuron_selection=selector(2))
    assert result.complete and result.skipped_shards == 1
    np.testing.assert_array_equal(result.concatenate()["selection"], np.arange(12) % 2)


def test_unfingerprintable_callable_refuses_resume(lrp: Any, tmp_path: Path) -> None:
    opaque = object()  # no state tf_clrp can read

    def select(images: Any, labels: Any, index: np.ndarray) -> np.ndarray:
        return index % 2 if opaque is not None else index

    x = images(8, seed=13)
    interrupted(lrp, x, tmp_path, fail_at=1, neuron_selection=select)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert any("opaque" in problem for problem in manifest["unverifiable"])
    with pytest.raises(ResumeMismatchError, match="cannot be fingerprinted"):
        run(lrp, x, tmp_path, neuron_selection=select)
    result = run(lrp, x, tmp_path, neuron_selection=select, resume=False)
    assert result.complete and result.n_samples == 8


def test_mismatch_lists_only_the_differing_settings(lrp: Any, tmp_path: Path) -> None:
    model = lrp.model
    x = images(6, seed=14)
    run(tf_clrp.create_analyzer("lrp.epsilon", model, epsilon=0.1), x, tmp_path)
    with pytest.raises(ResumeMismatchError) as info:
        run(tf_clrp.create_analyzer("lrp.epsilon", model, epsilon=0.25), x, tmp_path)
    message = str(info.value)
    lines = [line for line in message.splitlines() if line.startswith("  ")]
    assert lines == ["  analyzer.options.epsilon: stored 0.1, now 0.25"], message
    assert len(message) < 400 and "0x" not in message and "function" not in message


def test_dataset_length_is_recorded(lrp: Any, tmp_path: Path) -> None:
    run(lrp, images(10, seed=15), tmp_path)
    with pytest.raises(ResumeMismatchError, match="n_samples_expected: stored 10, now 20"):
        run(lrp, images(20, seed=15), tmp_path)
    ds = tf.data.Dataset.from_tensor_slices(images(20, seed=15))  # unbatched: length known
    with pytest.raises(ResumeMismatchError, match="10, now 20"):
        run(lrp, ds, tmp_path)


def test_labels_and_the_same_labels_as_an_array_are_one_selection(lrp: Any, tmp_path: Path) -> None:
    x, y = images(12, seed=16), (np.arange(12) * 2) % N_CLASSES
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(5)
    run(lrp, ds, tmp_path, neuron_selection="labels")
    again = run(lrp, ds, tmp_path, neuron_selection=y)  # same values: not a mismatch
    assert again.complete and again.computed_shards == 0
    with pytest.raises(
        ResumeMismatchError, match="sample 0 was explained for unit 0, the selection now gives 1"
    ):
        run(lrp, ds, tmp_path, neuron_selection=(y + 1) % N_CLASSES)

    # an array stored, "labels" now: the labels of the skipped samples are compared
    interrupted(lrp, ds, tmp_path / "b", fail_at=1, neuron_selection=y)
    result = run(lrp, ds, tmp_path / "b", neuron_selection="labels")
    assert result.complete and result.skipped_shards == 1
    np.testing.assert_array_equal(result.concatenate()["selection"], y)
    interrupted(lrp, ds, tmp_path / "c", fail_at=1, neuron_selection=(y + 1) % N_CLASSES)
    with pytest.raises(ResumeMismatchError, match="sample 0 was explained for unit 1"):
        run(lrp, ds, tmp_path / "c", neuron_selection="labels")


def test_older_manifest_is_named(lrp: Any, tmp_path: Path) -> None:
    x = images(8, seed=17)
    interrupted(lrp, x, tmp_path, fail_at=1)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    manifest["format_version"] = 1
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ResumeMismatchError, match="written by an older tf_clrp"):
        run(lrp, x, tmp_path)


# ---------------------------------------------------------------------------- the lock
HOLD_LOCK = textwrap.dedent("""
    import importlib.util, sys
    spec = importlib.util.spec_from_file_location("lock", {module!r})
    lock = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(lock)
    held = lock.FolderLock(__import__("pathlib").Path({folder!r}))
    held.acquire()
    print("LOCKED", flush=True)
    sys.stdin.read()  # hold until the parent closes stdin (or kills this process)
    held.release()
""")


def hold_lock(folder: Path) -> subprocess.Popen[str]:
    """A bare Python process (no TensorFlow) that takes the folder's lock and holds it."""
    code = HOLD_LOCK.format(module=str(LOCK_MODULE), folder=str(folder))
    process = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None and process.stdout.readline().strip() == "LOCKED"
    return process


def test_second_run_on_a_locked_folder_is_refused(lrp: Any, tmp_path: Path) -> None:
    model = lrp.model
    x = images(12, seed=18)
    gradient = tf_clrp.create_analyzer("gradient", model)
    refused: list[BaseException] = []
    original = type(lrp).analyze

    def analyze(batch: Any, *args: Any, **kwargs: Any) -> Any:
        if not refused:  # while the first run writes, a second one starts over
            try:
                run(gradient, x, tmp_path, resume=False)
            except TfClrpError as exc:
                refused.append(exc)
            else:
                refused.append(AssertionError("the second run was not refused"))
        return original(lrp, batch, *args, **kwargs)

    lrp.analyze = analyze
    try:
        result = run(lrp, x, tmp_path)
    finally:
        del lrp.analyze
    assert isinstance(refused[0], datasets.FolderLockedError), refused
    assert "in use by another explain_dataset run" in str(refused[0])
    assert result.manifest["analyzer"]["name"] == "lrp.z_plus" and result.complete
    np.testing.assert_allclose(load_explanations(tmp_path).maps, lrp.analyze(x), atol=1e-6)
    assert ".tf_clrp.lock" not in files(tmp_path)  # released


def test_lock_held_by_another_process_then_stale(lrp: Any, tmp_path: Path) -> None:
    x = images(4, seed=19)
    holder = hold_lock(tmp_path)
    try:
        with pytest.raises(TfClrpError, match=f"running process {holder.pid}"):
            run(lrp, x, tmp_path)
    finally:
        holder.kill()  # dies without releasing: the lock file stays, with a dead pid
        holder.wait()
    lock = json.loads((tmp_path / ".tf_clrp.lock").read_text())
    assert lock["pid"] == holder.pid and lock["host"] == socket.gethostname()
    result = run(lrp, x, tmp_path)  # stale: taken over
    assert result.complete and ".tf_clrp.lock" not in files(tmp_path)


def test_lock_from_another_host_is_not_taken_over(lrp: Any, tmp_path: Path) -> None:
    tmp_path.mkdir(exist_ok=True)
    (tmp_path / ".tf_clrp.lock").write_text(
        json.dumps({"pid": 1, "host": "elsewhere.example", "token": "x"})
    )
    with pytest.raises(TfClrpError, match="host 'elsewhere.example'"):
        run(lrp, images(4), tmp_path)


# ---------------------------------------------------------------------------- damaged shards
def flip_byte(path: Path, offset_from_end: int = 7) -> None:
    data = bytearray(path.read_bytes())
    data[-offset_from_end] ^= 0x40
    path.write_bytes(bytes(data))


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize("fmt, damage", [("npz", truncate), ("npy", truncate), ("npy", flip_byte)])
def test_damaged_shard_is_named_at_load_and_recomputed_on_resume(
    lrp: Any, tmp_path: Path, fmt: str, damage: Any
) -> None:
    x = images(12, seed=20)
    run(lrp, x, tmp_path, format=fmt)
    shard = tmp_path / ("shard_00001.npz" if fmt == "npz" else "shard_00001/maps.npy")
    damage(shard)
    with pytest.raises(ValueError, match=str(shard)):
        load_explanations(tmp_path).concatenate()

    calls = count_calls(lrp)
    try:
        with pytest.warns(RuntimeWarning, match="shard_00001"):
            result = run(lrp, x, tmp_path, format=fmt)
    finally:
        del lrp.analyze
    assert calls == [4, 4]  # shards 1 and 2 recomputed, shard 0 kept
    assert result.complete and result.skipped_shards == 1
    np.testing.assert_allclose(load_explanations(tmp_path).maps, lrp.analyze(x), atol=1e-6)


def test_memory_mapped_load_checks_sizes(lrp: Any, tmp_path: Path) -> None:
    run(lrp, images(8, seed=21), tmp_path, format="npy")
    truncate(tmp_path / "shard_00000" / "maps.npy")
    with pytest.raises(ValueError, match=r"shard_00000/maps\.npy.*truncated"):
        list(load_explanations(tmp_path).iter_shards(["maps"], mmap=True))


# ---------------------------------------------------------------------------- owned files
def test_foreign_files_are_never_deleted(lrp: Any, tmp_path: Path) -> None:
    (tmp_path / "shard_1.tfrecord").write_bytes(b"user data")
    (tmp_path / "shard_imgs").mkdir()
    (tmp_path / "shard_imgs" / "a.png").write_bytes(b"png")
    (tmp_path / "shard_00005").mkdir()  # our name, but holds a file tf_clrp never writes
    (tmp_path / "shard_00005" / "notes.txt").write_text("mine")
    x = images(8, seed=22)
    with pytest.raises(TfClrpError, match="not empty .* has no manifest.json"):
        run(lrp, x, tmp_path)
    mine = ["shard_00005", "shard_1.tfrecord", "shard_imgs"]
    assert files(tmp_path) == mine

    (tmp_path / "shard_00007.npz").write_bytes(b"an old tf_clrp shard?")  # our pattern
    with pytest.raises(TfClrpError, match="shard_00005, shard_00007.npz, named like"):
        run(lrp, x, tmp_path, overwrite=True)  # without a manifest, a name proves nothing
    assert files(tmp_path) == sorted([*mine, "shard_00007.npz"])
    (tmp_path / "shard_00007.npz").unlink()
    (tmp_path / "shard_00005" / "notes.txt").unlink()
    (tmp_path / "shard_00005").rmdir()
    result = run(lrp, x, tmp_path, overwrite=True)
    assert result.complete
    (tmp_path / "shard_00005").mkdir()  # our name, but holds a file tf_clrp never writes
    (tmp_path / "shard_00005" / "notes.txt").write_text("mine")
    assert files(tmp_path) == ["manifest.json", "shard_00000.npz", "shard_00001.npz", *mine]
    for fmt in ("npy", "npz"):  # starting over deletes only tf_clrp's files
        run(lrp, x, tmp_path, resume=False, format=fmt)
    assert files(tmp_path) == ["manifest.json", "shard_00000.npz", "shard_00001.npz", *mine]
    assert (tmp_path / "shard_1.tfrecord").read_bytes() == b"user data"
    assert (tmp_path / "shard_imgs" / "a.png").exists()
    assert (tmp_path / "shard_00005" / "notes.txt").read_text() == "mine"


# ---------------------------------------------------------------------------- clear errors
def test_errors_name_the_global_sample(lrp: Any, tmp_path: Path) -> None:
    x = images(50, seed=23)
    x[37, 2, 3, 1] = np.nan
    with pytest.raises(InputError, match="sample 37 "):
        run(
            lrp,
            (x[i : i + 10] for i in range(0, 50, 10)),
            tmp_path / "nan",
            shard_size=16,
            batch_size=8,
        )
    assert load_explanations(tmp_path / "nan").n_samples == 32  # finished shards kept

    y = np.arange(50) % N_CLASSES
    y[41] = N_CLASSES + 2
    ds = tf.data.Dataset.from_tensor_slices((images(50), y)).batch(6)
    with pytest.raises(SelectionError, match="label 7 at sample 41 "):
        run(lrp, ds, tmp_path / "label", neuron_selection="labels", shard_size=16, batch_size=8)


@pytest.mark.parametrize(
    "name, value",
    [("shard_size", 2.5), ("shard_size", 0), ("batch_size", "8"), ("shard_size", True)],
)
def test_sizes_must_be_positive_integers(lrp: Any, tmp_path: Path, name: str, value: Any) -> None:
    with pytest.raises(ValueError, match=f"{name} must be a positive integer, got "):
        run(lrp, images(4), tmp_path, **{name: value})


@pytest.mark.parametrize("content", ["[]", "{}", '{"format_version": 2, "shards": [3]}'])
def test_foreign_manifest_is_a_clear_error(lrp: Any, tmp_path: Path, content: str) -> None:
    (tmp_path / "manifest.json").write_text(content)
    with pytest.raises(ValueError, match="not a tf_clrp manifest|malformed"):
        load_explanations(tmp_path)
    for resume in (True, False):
        with pytest.raises(ValueError, match="not a tf_clrp manifest|malformed"):
            run(lrp, images(4), tmp_path, resume=resume)
    assert (tmp_path / "manifest.json").read_text() == content


def test_partial_write_on_npy_keeps_the_errno(tmp_path: Path) -> None:
    """A write that stops part-way (as on a full disk: some bytes fit) keeps its errno.

    numpy's C writer reports such a write as "N requested and M written" with no errno;
    here the file-size limit (RLIMIT_FSIZE, errno EFBIG) makes writes stop part-way.
    """
    wide = keras.Sequential(
        [keras.Input((32, 32, 3)), keras.layers.Flatten(), keras.layers.Dense(N_CLASSES)]
    )
    analyzer = tf_clrp.create_analyzer("gradient", wide)
    x = np.random.default_rng(0).normal(size=(16, 32, 32, 3)).astype(np.float32)
    analyzer.analyze(x[:2])  # trace before limiting file sizes
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, hard))  # a shard's maps: 196 KB
    try:
        with pytest.raises(ExplanationStorageError) as info:
            run(analyzer, x, tmp_path, format="npy", shard_size=16, batch_size=16)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)
    assert info.value.errno == errno.EFBIG, info.value
    assert files(tmp_path) == ["manifest.json"]


# ---------------------------------------------------------------------------- on disk
def test_no_integer_selection_codes_on_disk(lrp: Any, tmp_path: Path) -> None:
    model = lrp.model
    analyzer = tf_clrp.create_analyzer("gradient", model)
    x = images(6, seed=24)
    result = run(analyzer, x, tmp_path / "all", neuron_selection="all")
    np.testing.assert_array_equal(result.concatenate()["selection"], -1)
    assert result.shards[0]["selection"] == [["all", 0, 4]]
    assert result.manifest["neuron_selection"] == "all"

    def seeds_then_units(images: Any, labels: Any, index: np.ndarray) -> Any:
        if index[0] == 0:
            return np.ones((len(index), N_CLASSES), np.float32)
        return index % N_CLASSES

    result = run(analyzer, x, tmp_path / "mixed", neuron_selection=seeds_then_units, batch_size=2)
    assert [r["selection"] for r in result.shards] == [
        [["seeds", 0, 2], ["unit", 2, 4]],
        [["unit", 4, 6]],
    ]
    np.testing.assert_array_equal(result.concatenate()["selection"], [-1, -1, 2, 3, 4, 0])
    text = (tmp_path / "mixed" / "manifest.json").read_text()
    assert "-3" not in text and "-2" not in text


def test_verify_false_checks_sizes_only(lrp: Any, tmp_path: Path) -> None:
    x = images(8, seed=25)
    run(lrp, x, tmp_path, format="npy")
    flip_byte(tmp_path / "shard_00001" / "maps.npy")
    fast = load_explanations(tmp_path, verify=False)
    assert not np.array_equal(fast.maps, run(lrp, x, tmp_path / "clean").maps)  # unchecked
    with pytest.raises(ValueError, match=r"shard_00001/maps\.npy is damaged.*CRC-32"):
        fast.verify()
    truncate(tmp_path / "shard_00000" / "index.npy")
    with pytest.raises(ValueError, match=r"shard_00000/index\.npy.*truncated"):
        list(fast.iter_shards(["maps"]))


def test_lock_of_an_earlier_process_with_this_pid_is_stale(lrp: Any, tmp_path: Path) -> None:
    """Containers often restart with the same pid: that lock is not this process's."""
    (tmp_path / ".tf_clrp.lock").write_text(
        json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "token": "an earlier run"})
    )
    assert run(lrp, images(4), tmp_path).complete
    assert ".tf_clrp.lock" not in files(tmp_path)


# ---------------------------------------------------------------------------- review fixes
class _Interrupt(Exception):
    pass


def _stopping(data: np.ndarray, stop: int, step: int = 2) -> Any:
    """The batches of ``data``, interrupted (an exception) at sample ``stop``."""
    for start in range(0, len(data), step):
        if start >= stop:
            raise _Interrupt()
        yield data[start : start + step]


@pytest.mark.parametrize("fmt", ["npz", "npy"])
def test_resume_with_other_data_of_same_length_is_refused(
    lrp: Any, tmp_path: Path, fmt: str
) -> None:
    x = images(20, seed=40)
    with pytest.raises(_Interrupt):
        run(lrp, _stopping(x, 8), tmp_path, format=fmt)
    assert load_explanations(tmp_path).n_samples == 8
    other = x.copy()
    other[5, 0, 0, 0] += 1.0  # one value in the second shard (samples 4-7)
    for data in (
        other,
        iter([other[i : i + 3] for i in range(0, 20, 3)]),
        tf.data.Dataset.from_tensor_slices(other),
    ):
        with pytest.raises(
            ResumeMismatchError, match="differ from the stored run at samples 4–7 .*shard_00001"
        ):
            run(lrp, data, tmp_path, format=fmt)
    assert load_explanations(tmp_path).n_samples == 8  # nothing was added
    reversed_x = x[::-1].copy()
    with pytest.raises(ResumeMismatchError, match="samples 0–3"):
        run(lrp, reversed_x, tmp_path, format=fmt)
    result = run(lrp, iter([x[i : i + 3] for i in range(0, 20, 3)]), tmp_path, format=fmt)
    assert result.complete and result.n_samples == 20
    maps = result.concatenate()["maps"]
    np.testing.assert_allclose(maps, lrp.analyze(x, "max_activation"), rtol=1e-5, atol=1e-7)
    with pytest.raises(ResumeMismatchError, match="samples 16–19"):  # a complete run too
        changed = x.copy()
        changed[-1] *= 0.5
        run(lrp, changed, tmp_path, format=fmt)


def test_input_checksum_is_crc32_of_the_float32_samples(lrp: Any, tmp_path: Path) -> None:
    import zlib

    x = images(6, seed=41).astype(np.float64)
    run(lrp, x, tmp_path)
    shards = json.loads((tmp_path / "manifest.json").read_text())["shards"]
    expected = [
        zlib.crc32(np.ascontiguousarray(x[i : i + 4], np.float32).tobytes()) for i in (0, 4)
    ]
    assert [s["input_crc32"] for s in shards] == expected


def test_resume_with_fewer_samples_than_finished_is_refused(lrp: Any, tmp_path: Path) -> None:
    x = images(12, seed=42)
    with pytest.raises(_Interrupt):
        run(lrp, _stopping(x, 8), tmp_path)
    with pytest.raises(ResumeMismatchError, match="data end after 6 samples"):
        run(lrp, iter([x[:3], x[3:6]]), tmp_path)


def test_other_analyzer_mismatch_is_one_short_line(tmp_path: Path) -> None:
    model = tiny_model()
    x = images(4, seed=43)
    run(tf_clrp.create_analyzer("lrp.epsilon", model), x, tmp_path)
    for name in ("clrp", "lrp.epsilon_plus", "gradient"):
        with pytest.raises(ResumeMismatchError) as info:
            run(tf_clrp.create_analyzer(name, model), x, tmp_path)
        lines = str(info.value).splitlines()[1:-1]
        assert lines[0].strip() == f"analyzer.name: stored 'lrp.epsilon', now '{name}'"
        assert len(lines) <= 2 and "composite" not in str(info.value)
        assert len(str(info.value)) < 400


def test_mismatch_lines_are_capped(tmp_path: Path) -> None:
    from tf_clrp.datasets._resume import mismatch_error

    found = [(f"analyzer.options.{'o' * 300}{i}", "a" * 500, "b" * 500) for i in range(20)]
    lines = str(mismatch_error(tmp_path, found)).splitlines()[1:-1]
    assert len(lines) == 9 and lines[-1].strip() == "... and 12 more"
    assert all(len(line) <= 204 for line in lines)


@pytest.mark.parametrize("fmt", ["npz", "npy"])
@pytest.mark.parametrize("name", ["shard_00000/maps.npy", "shard_00003.npz"])
def test_overwrite_without_manifest_deletes_no_shard_named_file(
    lrp: Any, tmp_path: Path, fmt: str, name: str
) -> None:
    user_file = tmp_path / name
    user_file.parent.mkdir(parents=True, exist_ok=True)
    user_file.write_bytes(b"USER DATA")
    with pytest.raises(TfClrpError, match=name.split("/")[0]):
        run(lrp, images(8, seed=44), tmp_path, overwrite=True, format=fmt)
    assert user_file.read_bytes() == b"USER DATA"


def test_format_2_shards_without_input_checksum_resume_with_a_warning(
    lrp: Any, tmp_path: Path
) -> None:
    x = images(12, seed=45)
    with pytest.raises(_Interrupt):
        run(lrp, _stopping(x, 8), tmp_path)
    path = tmp_path / "manifest.json"
    manifest = json.loads(path.read_text())
    for shard in manifest["shards"]:
        del shard["input_crc32"]  # as written before the field existed
    path.write_text(json.dumps(manifest))
    with pytest.warns(RuntimeWarning, match="2 finished shard.*no input checksums"):
        result = run(lrp, x, tmp_path)
    assert result.complete and result.n_samples == 12
    assert "input_crc32" in json.loads(path.read_text())["shards"][2]


def test_overwrite_without_manifest_deletes_no_temporary_named_file(
    lrp: Any, tmp_path: Path
) -> None:
    user_file = tmp_path / ".shard_notes.tmp"  # tf_clrp's temporary pattern, not its file
    user_file.write_bytes(b"USER DATA")
    (tmp_path / "notes.txt").write_text("mine")
    assert run(lrp, images(8, seed=46), tmp_path, overwrite=True).complete
    assert user_file.read_bytes() == b"USER DATA"


def test_input_checksum_of_non_numeric_inputs() -> None:
    import zlib

    from tf_clrp.datasets._input_checksum import update

    words = np.array([["a cat"], ["a dog"]])
    assert update(0, words) == zlib.crc32(np.ascontiguousarray(words).tobytes())
    assert update(update(0, words[:1]), words[1:]) == update(0, words)  # batching-free
    objects = np.array([b"a", "b"], dtype=object)
    assert update(0, objects) == zlib.crc32(b"b'a'\0'b'\0")
    assert update(update(0, objects[:1]), objects[1:]) == update(0, objects)
