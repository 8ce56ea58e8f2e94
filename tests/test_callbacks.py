"""Tests of tf_clrp.callbacks.HeatmapCallback on a tiny model trained for two epochs."""

from __future__ import annotations

import glob
import os
import warnings

import cv2
import keras
import numpy as np
import pytest

import tf_clrp
from tf_clrp import callbacks as cbmod
from tf_clrp.callbacks import HeatmapCallback

SHAPE = (10, 10, 3)


def _data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(40, *SHAPE)).astype("float32")
    y = (x[:, :5, :, 0].mean(axis=(1, 2)) > 0).astype("int64") + (
        x[:, 5:, :, 1].mean(axis=(1, 2)) > 0
    )
    return x, y


def _model(seed: int = 0) -> keras.Model:
    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [
            keras.Input(SHAPE),
            keras.layers.Conv2D(4, 3, activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Flatten(),
            keras.layers.Dropout(0.25),
            keras.layers.Dense(3, activation="softmax"),
        ]
    )
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def _fit(model: keras.Model, callbacks: list, epochs: int = 2) -> None:
    x, y = _data()
    model.fit(
        x[:32],
        y[:32],
        epochs=epochs,
        batch_size=8,
        shuffle=True,
        validation_data=(x[32:], y[32:]),
        callbacks=callbacks,
        verbose=0,
    )


def test_writes_grids_and_tensorboard(tmp_path) -> None:
    x, _ = _data()
    log_dir = tmp_path / "logs"
    cb = HeatmapCallback(
        x[:2],
        methods=["gradient", "clrp"],
        log_dir=log_dir,
        tensorboard="auto",
        class_names=["a", "b", "c"],
        use_tf_function=False,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # nothing may fail
        _fit(_model(), [cb])
    files = sorted(os.path.basename(p) for p in glob.glob(str(log_dir / "*.png")))
    assert files == ["heatmaps_epoch0001.png", "heatmaps_epoch0002.png"]
    grid = cv2.imread(str(log_dir / "heatmaps_epoch0002.png"))
    # grid_image layout: title 20 + header 18 + 2 rows of (128 + 16 + 4) + scale footer 44;
    # 3 columns of 132 + 4
    assert grid.shape == (20 + 18 + 2 * 148 + 44, 3 * 132 + 4, 3)
    assert len(cb.timings) == 2 and all(t > 0 for *_, t in cb.timings)
    assert cb.failed == {}
    if cbmod.tensorboard_available():
        import tensorflow as tf

        events = glob.glob(str(log_dir / "heatmaps" / "events.out.tfevents.*"))
        assert len(events) == 1
        tags = [
            (v.tag, e.step)
            for e in tf.compat.v1.train.summary_iterator(events[0])
            for v in e.summary.value
        ]
        assert ("epoch/grid", 2) in tags and ("epoch/clrp", 1) in tags
    else:
        assert not (log_dir / "heatmaps").exists()


def test_training_is_bitwise_identical(tmp_path) -> None:
    reference = _model(seed=7)
    _fit(reference, [])
    x, _ = _data()
    cb = HeatmapCallback(
        x[:3],
        methods=["lrp.epsilon_plus", ("smoothgrad", {"augment_by_n": 2})],
        log_dir=tmp_path,
        every_n_epochs=1,
        every_n_batches=3,
        tensorboard="auto",
    )
    model = _model(seed=7)
    _fit(model, [cb])
    assert len(cb.written) == 2 + 2  # 4 batches per epoch: global batches 3 and 6, 2 epochs
    assert os.path.exists(tmp_path / "heatmaps_epoch0001_batch3.png")
    assert os.path.exists(tmp_path / "heatmaps_epoch0002_batch2.png")
    for a, b in zip(reference.get_weights(), model.get_weights()):
        assert a.tobytes() == b.tobytes()


def test_failing_method_warns_and_training_goes_on(tmp_path) -> None:
    x, _ = _data()
    cb = HeatmapCallback(
        x[:2],
        methods=["gradient", "no_such_method", ("lrp.epsilon", {"bogus_option": 1})],
        log_dir=tmp_path,
        tensorboard=False,
        use_tf_function=False,
    )
    with pytest.warns(RuntimeWarning) as record:
        _fit(_model(), [cb])
    messages = [str(w.message) for w in record]
    assert any("'no_such_method' failed" in m and "ValueError" in m for m in messages)
    assert any("lrp.epsilon(bogus_option=1)" in m and "TypeError" in m for m in messages)
    assert len([m for m in messages if "no_such_method" in m]) == 1  # warned once
    assert sorted(cb.failed) == ["lrp.epsilon(bogus_option=1)", "no_such_method"]
    assert len(cb.written) == 2  # the gradient column still works


def test_write_failure_is_a_warning(tmp_path) -> None:
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("x")
    x, _ = _data()
    cb = HeatmapCallback(
        x[:1], methods=["gradient"], log_dir=blocker, tensorboard=False, use_tf_function=False
    )
    cb.set_model(_model())
    with pytest.warns(RuntimeWarning, match="could not explain or write heatmaps at epoch 1"):
        cb.on_epoch_end(0)
    assert cb.written == [] and len(cb.timings) == 1


def test_maps_follow_live_weights_without_rebuilding(tmp_path) -> None:
    x, _ = _data()
    model = _model()
    cb = HeatmapCallback(x[:2], classes=[0, 1], methods=["lrp.epsilon"], log_dir=tmp_path)
    cb.set_model(model)
    before, targets = cb.explain()
    analyzer = cb.analyzers["lrp.epsilon"]
    dense = model.layers[-1]
    dense.kernel.assign(dense.kernel.numpy() * -2.0 + 0.1)
    after, _ = cb.explain()
    assert cb.analyzers["lrp.epsilon"] is analyzer  # built once
    assert list(targets) == [0, 1]
    assert not np.allclose(before["lrp.epsilon"], after["lrp.epsilon"])
    fresh = tf_clrp.create_analyzer("lrp.epsilon", model).analyze(x[:2], neuron_selection=[0, 1])
    np.testing.assert_allclose(after["lrp.epsilon"], fresh, rtol=1e-5, atol=1e-7)


def test_predicted_classes_by_default(tmp_path) -> None:
    x, _ = _data()
    model = _model()
    cb = HeatmapCallback(x[:4], methods=["gradient"], log_dir=tmp_path, use_tf_function=False)
    cb.set_model(model)
    _, targets = cb.explain()
    np.testing.assert_array_equal(targets, np.asarray(model(x[:4])).argmax(axis=1))


def test_never_overwrites_earlier_runs(tmp_path) -> None:
    x, _ = _data()
    model = _model()
    first = HeatmapCallback(
        x[:1],
        methods=["gradient"],
        log_dir=tmp_path,
        tensorboard=False,
        every_n_batches=2,
        use_tf_function=False,
    )
    first.set_model(model)
    first.on_epoch_begin(0)
    first.on_train_batch_end(0)
    first.on_train_batch_end(1)  # second batch of the run: a batch event
    first.on_epoch_end(0)
    assert [os.path.basename(p) for p in first.written] == [
        "heatmaps_epoch0001_batch2.png",
        "heatmaps_epoch0001.png",
    ]
    content = (tmp_path / "heatmaps_epoch0001.png").read_bytes()
    second = HeatmapCallback(
        x[:1], methods=["gradient"], log_dir=tmp_path, tensorboard=False, use_tf_function=False
    )
    second.set_model(model)
    with pytest.warns(RuntimeWarning, match="_run<k> suffix"):
        second.on_epoch_end(0)
        second.on_epoch_end(0)
    assert (tmp_path / "heatmaps_epoch0001.png").read_bytes() == content
    assert second.written == [
        str(tmp_path / "heatmaps_epoch0001_run2.png"),
        str(tmp_path / "heatmaps_epoch0001_run3.png"),
    ]


def test_argument_validation(monkeypatch) -> None:
    x = np.zeros((2, *SHAPE), np.float32)
    with pytest.raises(ValueError, match="got 3 classes for 2 images"):
        HeatmapCallback(x, classes=[0, 1, 2])
    with pytest.raises(ValueError, match="both are None"):
        HeatmapCallback(x, every_n_epochs=None)
    with pytest.raises(ValueError, match="every_n_batches must be a positive int"):
        HeatmapCallback(x, every_n_batches=0)
    with pytest.raises(ValueError, match="non-empty batch"):
        HeatmapCallback(np.zeros((0, *SHAPE)))
    with pytest.raises(TypeError, match="analyzer name or a"):
        HeatmapCallback(x, methods=[3])
    with pytest.raises(ValueError, match="tensorboard must be"):
        HeatmapCallback(x, tensorboard="yes")
    monkeypatch.setattr(cbmod, "tensorboard_available", lambda: False)
    with pytest.raises(ImportError, match="tf_clrp\\[tensorboard\\]"):
        HeatmapCallback(x, tensorboard=True)
    assert HeatmapCallback(x, tensorboard="auto").use_tensorboard is False
    labels = [m[0] for m in HeatmapCallback(x, methods=["clrp", "clrp"]).methods]
    assert labels == ["clrp", "clrp #2"]
    assert HeatmapCallback(x, methods="gradient").methods == [("gradient", "gradient", {})]


def test_notice_when_tensorboard_is_missing(monkeypatch, tmp_path) -> None:
    x = np.zeros((2, *SHAPE), np.float32)
    monkeypatch.setattr(cbmod, "tensorboard_available", lambda: False)
    with pytest.warns(UserWarning, match="not installed.*pip install tensorboard") as record:
        HeatmapCallback(x, tensorboard="auto", log_dir=tmp_path)
    assert len(record) == 1 and str(tmp_path) in str(record[0].message)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        HeatmapCallback(x, tensorboard=False)  # asked for no TensorBoard: no notice
    monkeypatch.setattr(cbmod, "tensorboard_available", lambda: True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert HeatmapCallback(x, tensorboard="auto").use_tensorboard is True


def test_rows_show_true_and_explained_class_and_titles_are_whole(monkeypatch, tmp_path) -> None:
    x, _ = _data()
    seen = {}
    original = cbmod.visualize.grid_image

    def recording(*args, **kwargs):
        seen.update(kwargs)
        grid = original(*args, **kwargs)
        seen["grid"] = grid
        return grid

    monkeypatch.setattr(cbmod.visualize, "grid_image", recording)
    cb = HeatmapCallback(
        x[:2],
        classes=[2, 0],
        labels=[1, 0],
        methods=[("lrp.epsilon", {"epsilon": 0.01})],
        log_dir=tmp_path,
        tensorboard=False,
        class_names=["a", "b", "c"],
        use_tf_function=False,
    )
    cb.set_model(_model())
    cb.on_epoch_end(0)
    assert seen["row_labels"] == [
        "sample 0: true b (1), explains c (2)",
        "sample 1: true a (0), explains a (0)",
    ]
    lines = cbmod.visualize.wrap_text("lrp.epsilon(epsilon=0.01)", 128)
    assert "".join(lines) == "lrp.epsilon(epsilon=0.01)" and len(lines) == 2
    # the header grows by one line for the wrapped title instead of cutting it
    assert seen["grid"].shape[0] == 20 + (4 + 14 * 2) + 2 * (128 + 16 + 4) + 44
    with pytest.raises(ValueError, match="got 3 labels for 2 images"):
        HeatmapCallback(x[:2], labels=[0, 1, 2], tensorboard=False)


def test_small_inputs_are_upscaled_for_tensorboard(monkeypatch, tmp_path) -> None:
    import tensorflow as tf

    written = {}

    def fake_image(tag, data, step, max_outputs=3):
        written[tag] = np.asarray(data)

    monkeypatch.setattr(tf.summary, "image", fake_image, raising=False)
    x, _ = _data()
    cb = HeatmapCallback(
        x[:2], methods=["gradient"], log_dir=tmp_path, tensorboard=False, use_tf_function=False
    )
    cb.use_tensorboard = True  # the summaries path without the tensorboard package
    cb.set_model(_model())
    cb.on_epoch_end(0)
    cb.on_train_end()
    pictures = written["epoch/gradient"]
    assert pictures.shape == (2, 130, 130, 3)  # 10 px × ceil(128 / 10)
    blocks = pictures.reshape(2, 10, 13, 10, 13, 3)
    assert (blocks == blocks[:, :, :1, :, :1]).all()  # nearest neighbour: 13×13 blocks
    assert written["epoch/grid"].shape[1:3] == cv2.imread(cb.written[0]).shape[:2]
    assert cbmod.upscale_nearest(np.zeros((1, 200, 300, 3), np.uint8), 128).shape == (
        1,
        200,
        300,
        3,
    )


def test_model_agnostic_methods_draw_without_a_compile_option(tmp_path) -> None:
    """Occlusion and prediction difference take no use_tf_function: the callback must not pass
    it (they used to fail inside the callback with a TypeError, caught as a warning)."""
    model = _model()
    _fit(model, [], epochs=1)
    x, _ = _data()
    cb = HeatmapCallback(
        x[:1],
        methods=[("occlusion", {"window": 4}), ("rise", {"n_masks": 50})],
        log_dir=tmp_path,
        tensorboard=False,
        every_n_epochs=1,
    )
    cb.set_model(model)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cb.on_epoch_end(0)
    assert not cb.failed
    assert len(cb.written) == 1
