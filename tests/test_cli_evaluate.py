"""``tf-clrp evaluate --metric ...``: the CLI's numbers against the library metrics called
directly and against numpy re-implementations written here; usage errors before loading."""

from __future__ import annotations

import json
from itertools import combinations

import cv2
import keras
import numpy as np
import pytest
import tensorflow as tf

import tf_clrp
from tf_clrp import cli
from tf_clrp.cli import models
from tf_clrp.cli.metric_report import summarize
from tf_clrp.cli.metric_runs import Quantity
from tf_clrp.cli.metric_table import METRICS
from tf_clrp.metrics import (
    PointingGame,
    discriminativeness_report,
    map_correlation,
    region_perturbation,
)

SIZE = 16
N_CLASSES = 5
# two images with two boxed classes each, one with a single class (pointing / mass)
BOXES = {
    "im0.png": [{"class": 1, "box": [0, 0, 8, 8]}, {"class": 3, "box": [8, 8, 16, 16]}],
    "im1.png": [
        {"class": 2, "box": [0, 8, 8, 16]},
        {"class": 4, "box": [8, 0, 16, 8]},
        {"class": 4, "box": [0, 0, 3, 3]},
    ],
    "im2.png": [{"class": 0, "box": [4, 4, 12, 12]}],
}
LABELS = {"im0.png": [0, 2], "im1.png": 4, "im3.png": 1}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A saved tiny model (logits layer + softmax), four 16x16 PNGs, boxes and labels."""
    root = tmp_path_factory.mktemp("evaluate")
    keras.utils.set_random_seed(3)
    inputs = keras.Input((SIZE, SIZE, 3))
    h = keras.layers.Conv2D(6, 3, activation="relu", padding="same")(inputs)
    h = keras.layers.AveragePooling2D(2)(h)
    h = keras.layers.Flatten()(h)
    logits = keras.layers.Dense(N_CLASSES, name="logits")(h)
    model = keras.Model(inputs, keras.layers.Activation("softmax")(logits))
    model.save(root / "tiny.keras")
    (root / "images").mkdir()
    rng = np.random.default_rng(5)
    images = {}
    for i in range(4):
        image = rng.integers(0, 255, (SIZE, SIZE, 3), np.uint8)
        cv2.imwrite(str(root / "images" / f"im{i}.png"), image[..., ::-1])  # file is BGR
        images[f"im{i}.png"] = image
    (root / "boxes.json").write_text(json.dumps(BOXES))
    (root / "labels.json").write_text(json.dumps(LABELS))
    one_class = {name: entries[:1] for name, entries in BOXES.items()}
    (root / "one_class.json").write_text(json.dumps(one_class))
    loaded = keras.models.load_model(root / "tiny.keras")
    return {
        "root": root,
        "images": images,
        "model": loaded,
        "logits": keras.Model(loaded.inputs, loaded.get_layer("logits").output),
    }


def _run(data, *extra: str, methods: str = "gradient") -> dict:
    root = data["root"]
    out = root / "result.json"
    argv = [
        "evaluate",
        "--model",
        str(root / "tiny.keras"),
        "--images",
        str(root / "images"),
        "--preprocess",
        "unit",
        "--methods",
        methods,
        "--json",
        str(out),
        "--force",
        "-q",
        *extra,
    ]
    assert cli.main(argv) == 0
    return json.loads(out.read_text())


def _labelled(data, *extra: str) -> tuple[dict, np.ndarray, np.ndarray]:
    """The CLI's result on the label file's rows, their inputs and classes."""
    result = _run(data, "--labels", str(data["root"] / "labels.json"), *extra)
    names = ["im0.png", "im0.png", "im1.png", "im3.png"]
    classes = np.array([0, 2, 4, 1])  # from the label file: not all the top classes
    return result, _inputs(data, names), classes


def _inputs(data, names) -> np.ndarray:
    return np.stack([data["images"][n].astype(np.float32) / 255.0 for n in names])


def _gradient_maps(data, x: np.ndarray, classes) -> np.ndarray:
    """d logit_c / d x by a direct GradientTape (the 'gradient' method's definition)."""
    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        z = data["logits"](xt)
        picked = tf.reduce_sum(z * tf.one_hot(classes, N_CLASSES))
    return tape.gradient(picked, xt).numpy()


def _box_rows():
    """(image name, class, boxes) per (image, class) pair in the box file's order."""
    rows = []
    for name, entries in BOXES.items():
        per_class: dict[int, list] = {}
        for entry in entries:
            per_class.setdefault(entry["class"], []).append(entry["box"])
        rows.extend((name, cls, boxes) for cls, boxes in per_class.items())
    return rows


def _mask(boxes) -> np.ndarray:
    mask = np.zeros((SIZE, SIZE), bool)
    for y0, x0, y1, x1 in boxes:
        mask[y0:y1, x0:x1] = True
    return mask


def _values(result: dict, metric: str, quantity: str, method: str = "gradient") -> np.ndarray:
    entry = result["metrics"][metric]["results"][method][quantity]
    return np.array([np.nan if v is None else v for v in entry["values"]])


# ----------------------------------------------------------------------------- aopc
def _numpy_aopc(logits_of, x, maps, classes, order, patch, steps, perturbation):
    """Samek et al.'s AOPC written out: patch sums, order, cumulative replacement."""
    r = maps.sum(axis=-1)
    n, grid = len(x), SIZE // patch
    sums = r.reshape(n, grid, patch, grid, patch).sum(axis=(2, 4)).reshape(n, -1)
    out = []
    for i in range(n):
        ranked = (
            sorted(range(grid * grid), key=lambda j: -sums[i, j])
            if order == "morf"
            else sorted(range(grid * grid), key=lambda j: sums[i, j])
        )
        fill = (
            np.zeros_like(x[i])
            if perturbation == "zero"
            else np.broadcast_to(x[i].mean(axis=(0, 1)), x[i].shape)
        )
        current = x[i].copy()
        curve = [logits_of(current[None])[0, classes[i]]]
        for j in ranked[:steps]:
            gy, gx = divmod(j, grid)
            window = np.s_[gy * patch : (gy + 1) * patch, gx * patch : (gx + 1) * patch]
            current[window] = fill[window]
            curve.append(logits_of(current[None])[0, classes[i]])
        curve = np.asarray(curve, np.float64)
        out.append(np.mean(curve[0] - curve))
    return np.asarray(out)


@pytest.mark.parametrize("perturbation", ["mean", "zero"])
def test_aopc_equals_numpy_and_the_library(data, perturbation) -> None:
    result, x, classes = _labelled(
        data,
        "--metric",
        "aopc",
        "--aopc-patch",
        "4",
        "--aopc-steps",
        "6",
        "--aopc-order",
        "morf,lerf",
        "--aopc-perturbation",
        perturbation,
    )
    maps = _gradient_maps(data, x, classes)
    library_maps = tf_clrp.create_analyzer("gradient", data["model"]).analyze(
        x, neuron_selection=classes
    )
    np.testing.assert_allclose(library_maps, maps, rtol=1e-5, atol=1e-7)

    def logits_of(batch):
        return data["logits"](batch).numpy().astype(np.float64)

    for order in ("morf", "lerf"):
        cli_values = _values(result, "aopc", order)
        expected = _numpy_aopc(logits_of, x, maps, classes, order, 4, 6, perturbation)
        np.testing.assert_allclose(cli_values, expected, rtol=1e-4, atol=1e-5)
        library = region_perturbation(
            data["model"],
            x,
            library_maps,
            targets=classes,
            order=order,
            patch_size=4,
            steps=6,
            perturbation=perturbation,
            seed=0,
        )
        np.testing.assert_allclose(cli_values, library.aopc, rtol=1e-6, atol=1e-7)
        summary = result["metrics"]["aopc"]["results"]["gradient"][order]
        assert summary["n"] == 4 and summary["value"] == pytest.approx(expected.mean(), abs=1e-5)
        assert summary["ci95"][0] <= summary["value"] <= summary["ci95"][1]
    assert not np.allclose(_values(result, "aopc", "morf"), _values(result, "aopc", "lerf"))


@pytest.mark.parametrize("perturbation", ["blur", "noise"])
def test_aopc_random_order_and_other_perturbations_equal_the_library(data, perturbation) -> None:
    result = _run(
        data,
        "--metric",
        "aopc",
        "--aopc-patch",
        "8",
        "--aopc-order",
        "random,morf",
        "--aopc-perturbation",
        perturbation,
        "--seed",
        "4",
    )
    names = sorted(data["images"])  # no boxes or labels: every image, its top class
    x = _inputs(data, names)
    top = data["logits"](x).numpy().argmax(axis=1)
    maps = tf_clrp.create_analyzer("gradient", data["model"]).analyze(x, neuron_selection=top)
    for order in ("random", "morf"):
        library = region_perturbation(
            data["model"],
            x,
            maps,
            targets=top,
            order=order,
            patch_size=8,
            perturbation=perturbation,
            seed=4,
        )
        np.testing.assert_allclose(
            _values(result, "aopc", order), library.aopc, rtol=1e-6, atol=1e-7
        )


# ----------------------------------------------------------------------------- pointing
@pytest.mark.parametrize("tolerance", [0.0, 70.0])
def test_pointing_equals_numpy_and_the_library(data, tolerance) -> None:
    result = _run(
        data,
        "--boxes",
        str(data["root"] / "boxes.json"),
        "--metric",
        "pointing",
        "--tolerance",
        str(tolerance),
    )
    rows = _box_rows()
    x = _inputs(data, [name for name, _, _ in rows])
    classes = np.array([cls for _, cls, _ in rows])
    maps = _gradient_maps(data, x, classes)
    radius = tolerance * SIZE / 224  # the tolerance is given at 224 px
    hits, exact = [], []
    for i, (_, _, boxes) in enumerate(rows):
        r = maps[i].sum(axis=-1)
        point = np.unravel_index(np.argmax(r), r.shape)
        ys, xs = np.nonzero(_mask(boxes))
        hits.append(float(np.min((ys - point[0]) ** 2 + (xs - point[1]) ** 2) <= radius**2))
        exact.append(float(_mask(boxes)[point]))
    assert 0 < sum(hits) < len(hits)  # both outcomes occur
    assert (hits == exact) == (tolerance == 0)  # the radius matters for these maps
    np.testing.assert_array_equal(_values(result, "pointing", "accuracy"), hits)
    per_class = {c: np.mean([h for h, k in zip(hits, classes) if k == c]) for c in classes}
    summary = result["metrics"]["pointing"]["results"]["gradient"]["accuracy"]
    assert summary["value"] == pytest.approx(np.mean(list(per_class.values())))
    game = PointingGame(tolerance=tolerance)
    game.update(maps, [b for _, _, b in rows], classes)
    assert summary["value"] == pytest.approx(game.result().mean) and summary["n"] == len(rows)
    assert "(random point)" in result["metrics"]["pointing"]["results"]


# ----------------------------------------------------------------------------- discriminativeness
def test_discriminativeness_equals_numpy_and_the_library(data) -> None:
    result = _run(
        data, "--boxes", str(data["root"] / "boxes.json"), "--metric", "discriminativeness"
    )
    rows = _box_rows()
    x = _inputs(data, [name for name, _, _ in rows])
    classes = np.array([cls for _, cls, _ in rows])
    r = _gradient_maps(data, x, classes).sum(axis=-1)
    own, other, corr = [], [], []
    for name in ("im0.png", "im1.png"):  # im2 has one class: left out
        idx = [i for i, row in enumerate(rows) if row[0] == name]
        for i in idx:
            positive = np.maximum(r[i], 0)
            others = np.any([_mask(rows[j][2]) for j in idx if j != i], axis=0)
            own.append(positive[_mask(rows[i][2])].sum() / positive.sum())
            other.append(positive[others].sum() / positive.sum())
        for i, j in combinations(idx, 2):
            corr.append(np.corrcoef(r[i].ravel(), r[j].ravel())[0, 1])
    np.testing.assert_allclose(_values(result, "discriminativeness", "own_mass"), own, rtol=1e-4)
    np.testing.assert_allclose(
        _values(result, "discriminativeness", "other_mass"), other, rtol=1e-4
    )
    np.testing.assert_allclose(
        _values(result, "discriminativeness", "correlation"), corr, rtol=1e-4, atol=1e-6
    )
    report = discriminativeness_report({1: r[0:1], 3: r[1:2]}, {1: [rows[0][2]], 3: [rows[1][2]]})
    assert _values(result, "discriminativeness", "own_mass")[0] == pytest.approx(
        report.own_mass[1][0], rel=1e-4
    )


# ----------------------------------------------------------------------------- class correlation
@pytest.mark.parametrize("second", ["runner-up", "2"])
def test_class_correlation_equals_numpy(data, second) -> None:
    result, x, classes = _labelled(data, "--metric", "class_correlation", "--second-class", second)
    z = data["logits"](x).numpy()
    if second == "runner-up":
        masked = np.where(np.eye(N_CLASSES, dtype=bool)[classes], -np.inf, z)
        others = masked.argmax(axis=1)
    else:
        others = np.full(len(x), 2)
    a = _gradient_maps(data, x, classes).sum(axis=-1)
    b = _gradient_maps(data, x, others).sum(axis=-1)
    expected = np.array(
        [
            np.nan if c == o else np.corrcoef(p.ravel(), q.ravel())[0, 1]
            for p, q, c, o in zip(a, b, classes, others)
        ]
    )
    got = _values(result, "class_correlation", "correlation")
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(
        got[np.isfinite(got)], map_correlation(a, b)[np.isfinite(got)], rtol=1e-4, atol=1e-6
    )
    summary = result["metrics"]["class_correlation"]["results"]["gradient"]["correlation"]
    assert summary["n"] == int(np.isfinite(expected).sum())


# ----------------------------------------------------------------------------- bootstrap
def test_bootstrap_interval_matches_the_normal_approximation() -> None:
    rng = np.random.default_rng(0)
    values = (rng.random(400) < 0.3).astype(float)
    s = summarize(Quantity("x", values), seed=1)
    half = 1.96 * values.std() / np.sqrt(len(values))
    assert s.value == pytest.approx(values.mean()) and s.n == 400
    assert (s.high - s.low) / 2 == pytest.approx(half, rel=0.15)
    assert s.low < s.value < s.high
    constant = summarize(Quantity("c", np.full(10, 0.5)), seed=1)
    assert (constant.low, constant.high) == (0.5, 0.5)
    with_nan = summarize(Quantity("n", np.array([1.0, np.nan, 3.0])), seed=1)
    assert with_nan.n == 2 and with_nan.value == 2.0
    # grouped: mean of group means, not of samples
    grouped = summarize(
        Quantity("g", np.array([1.0, 1.0, 1.0, 0.0]), groups=np.array([0, 0, 0, 1])), seed=1
    )
    assert grouped.value == pytest.approx(0.5)


# ----------------------------------------------------------------------------- output
def test_tables_and_json_to_stdout(data, capsys) -> None:
    root = data["root"]
    base = [
        "evaluate",
        "--model",
        str(root / "tiny.keras"),
        "--images",
        str(root / "images"),
        "--boxes",
        str(root / "boxes.json"),
        "--preprocess",
        "unit",
        "--methods",
        "gradient,clrp",
        "--metric",
        "pointing",
        "--metric",
        "aopc",
        "--aopc-patch",
        "8",
    ]
    assert cli.main([*base, "-q"]) == 0
    out = capsys.readouterr().out
    assert "5 (image, class) pairs" in out and "95% CI" in out
    for row in ("gradient", "clrp", "(center baseline)", "(random point)", "morf", "lerf"):
        assert row in out
    assert cli.main([*base, "--json", "-"]) == 0
    parsed = json.loads(capsys.readouterr().out)
    assert set(parsed["metrics"]) == {"pointing", "aopc"}
    assert set(parsed["metrics"]["aopc"]["results"]) == {"gradient", "clrp"}
    target = root / "exists.json"
    target.write_text("{}")
    assert cli.main([*base, "--json", str(target)]) == 1  # no --force: refused, kept
    assert target.read_text() == "{}" and "--force" in capsys.readouterr().err


def test_builtin_mosaics_offer_every_metric(monkeypatch, capsys) -> None:
    from tests.test_cli import _tiny_imagenet_model

    monkeypatch.setattr(models, "efficientnet", _tiny_imagenet_model)
    assert (
        cli.main(
            [
                "evaluate",
                "--n",
                "1",
                "--methods",
                "gradient",
                "--metric",
                ",".join(METRICS),
                "--aopc-patch",
                "56",
                "--json",
                "-",
                "-q",
            ]
        )
        == 0
    )
    parsed = json.loads(capsys.readouterr().out)
    assert set(parsed["metrics"]) == set(METRICS)
    assert (
        parsed["metrics"]["discriminativeness"]["results"]["gradient"]["correlation"]["n"] == 6
    )  # four tiles: six class pairs


# ----------------------------------------------------------------------------- usage errors
@pytest.mark.parametrize(
    "extra, named",
    [
        (["--metric", "bogus"], "--metric"),
        (["--metric", "aopc,aopc"], "--metric"),
        (["--metric", "pointing"], "--boxes"),  # --images without boxes
        (["--metric", "discriminativeness"], "--boxes"),
        (["--metric", "aopc", "--aopc-steps", "0"], "--aopc-steps"),
        (["--metric", "aopc", "--aopc-steps", "two"], "--aopc-steps"),
        (["--metric", "aopc", "--aopc-patch", "-4"], "--aopc-patch"),
        (["--metric", "aopc", "--aopc-order", "morf,upward"], "--aopc-order"),
        (["--metric", "aopc", "--aopc-order", "morf,morf"], "--aopc-order"),
        (["--metric", "aopc", "--aopc-perturbation", "salt"], "--aopc-perturbation"),
        (["--metric", "class_correlation", "--aopc-steps", "3"], "--aopc-steps"),
        (["--metric", "class_correlation", "--second-class", "-1"], "--second-class"),
        (["--metric", "aopc", "--labels", "L", "--boxes", "B"], "--labels"),
    ],
)
def test_usage_errors_come_before_the_model_is_loaded(tmp_path, capsys, extra, named) -> None:
    extra = [str(tmp_path / "x.json") if e in ("L", "B") else e for e in extra]
    # the model file does not exist: loading it would be exit code 1
    argv = [
        "evaluate",
        "--model",
        str(tmp_path / "missing.keras"),
        "--images",
        str(tmp_path),
        *extra,
    ]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert named in err and "Traceback" not in err


def test_two_class_metrics_refuse_single_class_boxes_before_loading(data, tmp_path, capsys) -> None:
    assert (
        cli.main(
            [
                "evaluate",
                "--model",
                str(tmp_path / "missing.keras"),
                "--images",
                str(data["root"] / "images"),
                "--boxes",
                str(data["root"] / "one_class.json"),
                "--metric",
                "discriminativeness",
            ]
        )
        == 2
    )
    assert "--boxes" in capsys.readouterr().err


@pytest.mark.parametrize(
    "extra, named",
    [
        (["--metric", "aopc", "--aopc-patch", "4", "--aopc-steps", "17"], "--aopc-steps"),
        (["--metric", "aopc", "--aopc-patch", "17"], "--aopc-patch"),
        (["--metric", "class_correlation", "--second-class", "5"], "--second-class"),
    ],
)
def test_size_dependent_usage_errors(data, capsys, extra, named) -> None:
    root = data["root"]
    assert (
        cli.main(
            [
                "evaluate",
                "--model",
                str(root / "tiny.keras"),
                "--images",
                str(root / "images"),
                "--methods",
                "gradient",
                "-q",
                *extra,
            ]
        )
        == 2
    )
    assert named in capsys.readouterr().err


# ----------------------------------------------------------------------------- insertion / deletion
def _numpy_deletion_auc(model, x, maps, classes, per_step):
    """Deletion to zero, one step at a time, and the trapezoid over k / n_steps."""
    r = maps.sum(axis=-1).reshape(len(x), -1)
    n_steps = -(-(SIZE * SIZE) // per_step)
    aucs = []
    for i in range(len(x)):
        order = np.argsort(-r[i], kind="stable")
        curve = []
        for k in range(n_steps + 1):
            xk = x[i].reshape(-1, 3).copy()
            xk[order[: k * per_step]] = 0.0
            curve.append(model(xk.reshape(1, SIZE, SIZE, 3)).numpy()[0, classes[i]])
        c = np.asarray(curve, np.float64)
        aucs.append(np.trapezoid(c, np.linspace(0, 1, n_steps + 1)))
    return np.asarray(aucs)


def test_insertion_deletion_equals_numpy_and_the_library(data) -> None:
    from tf_clrp.metrics.insertion_deletion import insertion_deletion

    result, x, classes = _labelled(
        data, "--metric", "insertion_deletion", "--insdel-fraction", "0.125"
    )
    maps = _gradient_maps(data, x, classes)
    expected = _numpy_deletion_auc(data["model"], x, maps, classes, 32)  # 1/8 of 256 px
    np.testing.assert_allclose(
        _values(result, "insertion_deletion", "deletion"), expected, rtol=1e-4, atol=1e-6
    )
    for mode in ("deletion", "insertion"):
        library = insertion_deletion(
            data["model"], x, maps, mode=mode, targets=classes, pixels_per_step=32
        )
        np.testing.assert_allclose(
            _values(result, "insertion_deletion", mode), library.auc, rtol=1e-4, atol=1e-6
        )


# ----------------------------------------------------------------------------- randomisation
def test_randomization_equals_the_library(data) -> None:
    from tf_clrp.metrics.randomization import model_randomization, weighted_layers

    result, x, classes = _labelled(data, "--metric", "randomization", "--seed", "2")
    model = data["model"]
    library = model_randomization(
        model, x, "gradient", targets=classes, layers=[weighted_layers(model)], seed=2
    )
    np.testing.assert_allclose(
        _values(result, "randomization", "spearman"), library.spearman[-1], rtol=1e-6, atol=1e-9
    )
    np.testing.assert_allclose(
        _values(result, "randomization", "ssim"), library.ssim[-1], rtol=1e-6, atol=1e-9
    )
    # independent: Spearman of |map| with itself would be 1; the randomised maps differ
    assert np.all(_values(result, "randomization", "spearman") < 0.99)


@pytest.mark.parametrize("value", ["0", "1.5", "nan", "x"])
def test_bad_insertion_deletion_fraction_is_a_usage_error(tmp_path, capsys, value) -> None:
    assert (
        cli.main(
            [
                "evaluate",
                "--model",
                str(tmp_path / "missing.keras"),
                "--images",
                str(tmp_path),
                "--metric",
                "insertion_deletion",
                "--insdel-fraction",
                value,
            ]
        )
        == 2
    )
    assert "--insdel-fraction" in capsys.readouterr().err


def test_multi_output_models_score_the_explained_output(data, tmp_path) -> None:
    keras.utils.set_random_seed(6)
    inputs = keras.Input((SIZE, SIZE, 3))
    h = keras.layers.Flatten()(keras.layers.Conv2D(3, 3, activation="relu")(inputs))
    first = keras.layers.Dense(3, name="first")(h)
    second = keras.layers.Dense(4, name="second_logits")(h)
    keras.Model(inputs, [first, keras.layers.Softmax()(second)]).save(tmp_path / "two.keras")
    out = tmp_path / "r.json"
    assert (
        cli.main(
            [
                "evaluate",
                "--model",
                str(tmp_path / "two.keras"),
                "--images",
                str(data["root"] / "images"),
                "--preprocess",
                "unit",
                "--methods",
                "gradient",
                "--output-index",
                "1",
                "--metric",
                "aopc",
                "--aopc-patch",
                "8",
                "--json",
                str(out),
                "-q",
            ]
        )
        == 0
    )
    result = json.loads(out.read_text())
    model = keras.models.load_model(tmp_path / "two.keras")
    logits = keras.Model(model.inputs, model.get_layer("second_logits").output)
    x = _inputs(data, sorted(data["images"]))
    top = logits(x).numpy().argmax(axis=1)
    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        picked = tf.reduce_sum(logits(xt) * tf.one_hot(top, 4))
    maps = tape.gradient(picked, xt).numpy()
    for order in ("morf", "lerf"):  # the logits of output 1, not output 0
        library = region_perturbation(logits, x, maps, targets=top, order=order, patch_size=8)
        np.testing.assert_allclose(
            _values(result, "aopc", order), library.aopc, rtol=1e-4, atol=1e-6
        )
