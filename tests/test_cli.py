"""Tests of the tf-clrp command line (tf_clrp.cli.main) on tiny models and images."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import cv2
import keras
import numpy as np
import pytest

from tf_clrp import cli
from tf_clrp.cli import common, models


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A saved tiny 5-class model, three PNG images, an unreadable file and a box file."""
    root = tmp_path_factory.mktemp("cli")
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((16, 16, 3)),
            keras.layers.Conv2D(4, 3, activation="relu", padding="same"),
            keras.layers.MaxPooling2D(),
            keras.layers.Flatten(),
            keras.layers.Dense(5, activation="softmax"),
        ]
    )
    model.save(root / "tiny.keras")
    images = root / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        cv2.imwrite(str(images / f"im{i}.png"), rng.integers(0, 255, (20, 24, 3), np.uint8))
    (root / "broken.jpg").write_bytes(b"this is not a jpeg")
    (root / "boxes.json").write_text(
        json.dumps(
            {
                "im0.png": [{"class": 1, "box": [0, 0, 10, 12]}],
                "im1.png": [
                    {"class": 2, "box": [10, 12, 20, 24]},
                    {"class": 2, "box": [0, 0, 4, 4]},
                    {"class": 4, "box": [0, 12, 10, 24]},
                ],
            }
        )
    )
    return root


def _tiny_imagenet_model() -> keras.Model:
    """A fast stand-in for EfficientNet-Lite0: 224x224x3 in, 1000 logits out."""
    keras.utils.set_random_seed(1)
    return keras.Sequential(
        [
            keras.Input((224, 224, 3)),
            keras.layers.Conv2D(4, 8, strides=8, activation="relu"),
            keras.layers.AveragePooling2D(4),
            keras.layers.Flatten(),
            keras.layers.Dense(1000),
        ]
    )


# ----------------------------------------------------------------------------- basics
def test_list_version_and_help(capsys) -> None:
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    assert "clrp" in out and "lrp.epsilon_plus" in out and "effnet_lite" in out
    assert cli.main(["--version"]) == 0
    assert cli.main([]) == 2  # no command: usage
    assert cli.main(["frobnicate"]) == 2
    assert "invalid choice" in capsys.readouterr().err


def test_console_script_help() -> None:
    exe = shutil.which("tf-clrp")
    cmd = [exe, "--help"] if exe else [sys.executable, "-m", "tf_clrp.cli", "--help"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr
    assert "explain" in done.stdout and "evaluate" in done.stdout and "Exit codes" in done.stdout


# ----------------------------------------------------------------------------- explain
def test_explain_writes_png_and_npz(workspace, tmp_path, capsys) -> None:
    out = tmp_path / "out"
    args = [
        "explain",
        str(workspace / "tiny.keras"),
        str(workspace / "images" / "im0.png"),
        str(workspace / "images" / "im1.png"),
        "--methods",
        "clrp,lrp.z_plus,gradient",
        "--top-k",
        "2",
        "--preprocess",
        "unit",
        "--out",
        str(out),
        "-q",
    ]
    assert cli.main(args) == 0
    assert sorted(os.listdir(out)) == ["im0.npz", "im0.png", "im1.npz", "im1.png"]
    data = np.load(out / "im0.npz")
    assert data["clrp"].shape == (2, 16, 16, 3) and data["lrp.z_plus"].shape == (2, 16, 16, 3)
    assert data["image"].shape == (16, 16, 3) and data["image"].dtype == np.uint8
    assert np.allclose(data["input"], data["image"] / 255.0)
    np.testing.assert_array_equal(data["classes"], np.argsort(-data["scores"])[:2])
    grid = cv2.imread(str(out / "im0.png"))
    assert grid is not None and grid.shape[2] == 3
    # existing outputs: refused without --force, replaced with it
    before = (out / "im0.png").read_bytes()
    assert cli.main(args) == 1
    assert "use --force" in capsys.readouterr().err
    assert (out / "im0.png").read_bytes() == before
    assert cli.main([*args, "--classes", "3,4"]) == 2  # --top-k and --classes exclude each other
    forced = [a for a in args if a not in ("--top-k", "2")] + ["--classes", "3,4", "--force"]
    assert cli.main(forced) == 0
    np.testing.assert_array_equal(np.load(out / "im0.npz")["classes"], [3, 4])


def test_explain_precision_option(workspace, tmp_path) -> None:
    maps = {}
    for precision in ("float32", "bfloat16"):
        out = tmp_path / precision
        assert (
            cli.main(
                [
                    "explain",
                    str(workspace / "tiny.keras"),
                    str(workspace / "images" / "im0.png"),
                    "--methods",
                    "clrp,lrp.z_plus,occlusion",
                    "--classes",
                    "1",
                    "--out",
                    str(out),
                    "-q",
                    "--precision",
                    precision,
                ]
            )
            == 0
        )
        maps[precision] = np.load(out / "im0.npz")
    for method in ("clrp", "lrp.z_plus"):
        exact, low = maps["float32"][method], maps["bfloat16"][method]
        assert np.abs(exact - low).max() <= 5e-2 * np.abs(exact).max()
    model = keras.models.load_model(workspace / "tiny.keras")
    assert common.build_analyzer("clrp", model, None, False, "bfloat16").precision == "bfloat16"
    assert common.build_analyzer("occlusion", model, None, False, "bfloat16") is not None
    assert (
        cli.main(
            [
                "explain",
                str(workspace / "tiny.keras"),
                str(workspace / "images" / "im0.png"),
                "--precision",
                "fp8",
            ]
        )
        == 2
    )


def test_explain_folder_and_duplicate_names(workspace, tmp_path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(workspace / "images" / "im0.png", other / "im0.png")
    out = tmp_path / "out"
    assert (
        cli.main(
            [
                "explain",
                str(workspace / "tiny.keras"),
                str(workspace / "images"),
                str(other),
                "--methods",
                "gradient",
                "--out",
                str(out),
                "-q",
                "--batch-size",
                "2",
            ]
        )
        == 0
    )
    names = sorted(os.listdir(out))
    assert names == [
        "im0.npz",
        "im0.png",
        "im0_2.npz",
        "im0_2.png",
        "im1.npz",
        "im1.png",
        "im2.npz",
        "im2.png",
    ]


def test_explain_every_method(workspace, tmp_path) -> None:
    import tf_clrp

    # attention_rollout needs attention layers: the tiny CNN has none
    methods = [m for m in tf_clrp.list_analyzers() if m not in ("lrp", "attention_rollout")]
    out = tmp_path / "all"
    assert (
        cli.main(
            [
                "explain",
                str(workspace / "tiny.keras"),
                str(workspace / "images" / "im1.png"),
                str(workspace / "images" / "im2.png"),
                "--methods",
                ",".join(methods),
                "--classes",
                "2",
                "--out",
                str(out),
                "-q",
                "--preprocess",
                "unit",
            ]
        )
        == 0
    )
    data = np.load(out / "im2.npz")
    for method in methods:
        assert data[method].shape == (1, 16, 16, 3) and np.isfinite(data[method]).all()


@pytest.mark.parametrize(
    "argv_tail, code, message",
    [
        (["--methods", "clrp,nope"], 2, "unknown method(s) 'nope'"),
        (["--methods", "lrp"], 2, "needs a composite"),
        (["--classes", "1,9"], 2, "has 5 outputs"),
        (["--classes", "a"], 2, "comma-separated ints"),
        (["--size", "8", "8"], 2, "does not match the model's input"),
        (["--batch-size", "0"], 2, "--batch-size"),
        (["--preprocess", "bogus"], 2, "invalid choice"),
    ],
)
def test_explain_usage_errors(workspace, tmp_path, capsys, argv_tail, code, message) -> None:
    argv = [
        "explain",
        str(workspace / "tiny.keras"),
        str(workspace / "images" / "im0.png"),
        "--out",
        str(tmp_path / "o"),
        *argv_tail,
    ]
    assert cli.main(argv) == code
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()


def test_explain_runtime_errors(workspace, tmp_path, capsys) -> None:
    model, image = str(workspace / "tiny.keras"), str(workspace / "images" / "im0.png")
    out = ["--out", str(tmp_path / "o")]
    cases = [
        ([model, str(tmp_path / "missing.png")], "not found"),
        ([model, str(workspace / "broken.jpg")], "cannot read image"),
        ([str(workspace / "boxes.json"), image], "is not a Keras model file"),
        ([str(tmp_path / "none.keras"), image], "model file not found"),
        ([model, str(tmp_path)], "has no image files"),
    ]
    for args, message in cases:
        assert cli.main(["explain", *args, *out]) == 1, message
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err


# ----------------------------------------------------------------------------- evaluate
def test_evaluate_user_boxes(workspace, capsys) -> None:
    argv = [
        "evaluate",
        "--model",
        str(workspace / "tiny.keras"),
        "--images",
        str(workspace / "images"),
        "--boxes",
        str(workspace / "boxes.json"),
        "--methods",
        "gradient,clrp",
        "--preprocess",
        "unit",
        "-q",
    ]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "3 (image, class) pairs" in out
    for row in ("gradient", "clrp", "(center baseline)", "(random point)"):
        assert row in out


def test_evaluate_errors(workspace, tmp_path, capsys) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({"im0.png": [{"class": 1, "box": [5, 5, 2, 2]}]}))
    outside = tmp_path / "outside.json"
    outside.write_text(json.dumps({"im0.png": [{"class": 1, "box": [0, 0, 99, 99]}]}))
    base = [
        "evaluate",
        "--model",
        str(workspace / "tiny.keras"),
        "--images",
        str(workspace / "images"),
        "--methods",
        "gradient",
    ]
    assert cli.main([*base, "--boxes", str(bad)]) == 1
    assert "not valid JSON" in capsys.readouterr().err
    assert cli.main([*base, "--boxes", str(wrong)]) == 1
    assert "bad entry" in capsys.readouterr().err
    assert cli.main([*base, "--boxes", str(outside)]) == 1
    assert "outside the image" in capsys.readouterr().err
    assert cli.main([*base, "--boxes", str(tmp_path / "nope.json")]) == 1
    assert cli.main(["evaluate", "--images", str(workspace / "images")]) == 2
    assert cli.main(["evaluate", "--n", "0"]) == 2
    assert cli.main(["evaluate", "--methods", "bogus"]) == 2


def test_evaluate_builtin_mosaics(monkeypatch, capsys) -> None:
    monkeypatch.setattr(models, "efficientnet", _tiny_imagenet_model)
    assert cli.main(["evaluate", "--n", "1", "--methods", "gradient,lrp.epsilon_plus", "-q"]) == 0
    out = capsys.readouterr().out
    assert "built-in 2x2 mosaics" in out and "lrp.epsilon_plus" in out
    assert "(random point)" in out and "(center baseline)" not in out


# ----------------------------------------------------------------------------- demo
def test_demo_pipeline_with_a_small_model(monkeypatch, tmp_path, capsys) -> None:
    monkeypatch.setattr(models, "efficientnet", _tiny_imagenet_model)
    out = tmp_path / "demo"
    assert cli.main(["demo", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert str(out / "comparison.png") in printed
    assert sorted(os.listdir(out)) == ["comparison.png", "demo_mosaic.png", "report.txt"]
    report = (out / "report.txt").read_text()
    for text in ("Top-5 predictions", "chelsea", "mosaic", "clrp", "Pointing Game", "total"):
        assert text in report
    figure = cv2.imread(str(out / "comparison.png"))
    assert figure.shape[0] > figure.shape[1]  # 6 rows x 5 columns
    assert cli.main(["demo", "--out", str(out)]) == 1  # no overwrite without --force
    assert "use --force" in capsys.readouterr().err
    assert cli.main(["demo", "--out", str(out), "--force", "-q", "--methods", "gradient"]) == 0


def test_demo_out_that_is_a_file_is_a_one_line_error(monkeypatch, tmp_path, capsys) -> None:
    monkeypatch.setattr(models, "efficientnet", _tiny_imagenet_model)
    a_file = tmp_path / "a_file"
    a_file.write_text("mine")
    assert cli.main(["demo", "--out", str(a_file), "--methods", "gradient", "-q"]) == 1
    err = capsys.readouterr().err
    assert "is not a folder" in err and str(a_file) in err and len(err.splitlines()) == 1
    assert "Traceback" not in err and "run with --debug" not in err
    assert a_file.read_text() == "mine"


@pytest.mark.slow
def test_demo_with_efficientnet(tmp_path) -> None:
    assert cli.main(["demo", "--out", str(tmp_path), "--force", "-q"]) == 0
    report = (tmp_path / "report.txt").read_text()
    assert "Egyptian cat" in report and "espresso" in report


# ----------------------------------------------------------------------------- scores in grids
def test_explain_records_the_explained_logit_and_probability(workspace, tmp_path) -> None:
    from tf_clrp.cli.scores import score_label

    out = tmp_path / "scores"
    assert (
        cli.main(
            [
                "explain",
                str(workspace / "tiny.keras"),
                str(workspace / "images" / "im0.png"),
                "--methods",
                "gradient",
                "--top-k",
                "3",
                "--preprocess",
                "unit",
                "--out",
                str(out),
                "-q",
            ]
        )
        == 0
    )
    data = np.load(out / "im0.npz")
    model = keras.models.load_model(workspace / "tiny.keras")
    hidden = keras.Model(model.inputs, model.layers[-2].output)(data["input"][None])
    kernel, bias = (np.asarray(w, np.float64) for w in model.layers[-1].get_weights())
    logits = np.asarray(hidden, np.float64) @ kernel + bias  # Dense(5) before its softmax
    np.testing.assert_allclose(data["logits"], logits[0], rtol=1e-5, atol=1e-6)
    expected_p = np.exp(logits[0] - logits[0].max())
    np.testing.assert_allclose(
        data["probabilities"], expected_p / expected_p.sum(), rtol=1e-5, atol=1e-7
    )
    np.testing.assert_array_equal(data["classes"], np.argsort(-logits[0])[:3])
    assert score_label(3, ["a", "b", "c", "dog"], 9.1349, 0.83125) == "dog (3): logit 9.13, p 0.831"
    assert score_label(7, None, -0.5, 2e-5) == "class 7: logit -0.5, p 2e-05"


# ----------------------------------------------------------------------------- multi-output
@pytest.fixture(scope="module")
def two_headed(tmp_path_factory):
    """A saved model with two outputs: 5 logits and 3 logits."""
    keras.utils.set_random_seed(3)
    inputs = keras.Input((16, 16, 3))
    features = keras.layers.Flatten()(keras.layers.Conv2D(4, 3, activation="relu")(inputs))
    model = keras.Model(
        inputs,
        [
            keras.layers.Dense(5, name="five")(features),
            keras.layers.Dense(3, name="three")(features),
        ],
    )
    path = tmp_path_factory.mktemp("multi") / "two_heads.keras"
    model.save(path)
    return path


def test_multi_output_model_needs_output_index(workspace, two_headed, tmp_path, capsys) -> None:
    import tensorflow as tf

    image = str(workspace / "images" / "im1.png")
    base = [
        "explain",
        str(two_headed),
        image,
        "--methods",
        "gradient",
        "--classes",
        "2",
        "--preprocess",
        "unit",
    ]
    assert cli.main([*base, "--out", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err
    assert "has 2 outputs" in err and "--output-index" in err and "Traceback" not in err
    assert cli.main([*base, "--out", str(tmp_path / "b"), "--output-index", "2"]) == 2
    assert "out of range" in capsys.readouterr().err
    assert cli.main([*base, "--out", str(tmp_path / "c"), "--output-index", "1", "-q"]) == 0
    data = np.load(tmp_path / "c" / "im1.npz")
    model = keras.models.load_model(two_headed)
    x = tf.constant(data["input"][None])
    with tf.GradientTape() as tape:
        tape.watch(x)
        score = model(x)[1][0, 2]
    expected = tape.gradient(score, x).numpy()
    np.testing.assert_allclose(data["gradient"], expected, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(data["logits"], np.asarray(model(x)[1])[0], rtol=1e-5)
    # a method without output_index is refused, not run on output 0
    assert (
        cli.main(
            [*base, "--out", str(tmp_path / "d"), "--output-index", "1", "--methods", "occlusion"]
        )
        == 1
    )
    assert "multi-output" in capsys.readouterr().err
    assert (
        cli.main(
            [
                "explain",
                str(workspace / "tiny.keras"),
                image,
                "--output-index",
                "1",
                "--out",
                str(tmp_path / "e"),
            ]
        )
        == 2
    )  # single output: only index 0


def test_dict_output_model_takes_output_index_in_model_outputs_order(
    workspace, tmp_path, capsys
) -> None:
    """A model returning {"x": ..., "y": ...}: --output-index counts model.outputs."""
    import tensorflow as tf

    keras.utils.set_random_seed(4)
    inputs = keras.Input((16, 16, 3))
    features = keras.layers.Flatten()(keras.layers.Conv2D(4, 3, activation="relu")(inputs))
    model = keras.Model(
        inputs,
        {
            "x": keras.layers.Dense(5, name="five")(features),
            "y": keras.layers.Dense(3, name="three")(features),
        },
    )
    path = tmp_path / "dict.keras"
    model.save(path)
    image = str(workspace / "images" / "im1.png")
    assert (
        cli.main(
            [
                "explain",
                str(path),
                image,
                "--methods",
                "gradient",
                "--classes",
                "2",
                "--preprocess",
                "unit",
                "--output-index",
                "1",
                "--out",
                str(tmp_path / "o"),
                "-q",
            ]
        )
        == 0
    ), capsys.readouterr().err
    data = np.load(tmp_path / "o" / "im1.npz")
    x = tf.constant(data["input"][None])
    with tf.GradientTape() as tape:
        tape.watch(x)
        score = model(x)["y"][0, 2]
    np.testing.assert_allclose(
        data["gradient"], tape.gradient(score, x).numpy(), rtol=1e-5, atol=1e-7
    )
    np.testing.assert_allclose(data["logits"], np.asarray(model(x)["y"])[0], rtol=1e-5)


# ----------------------------------------------------------------------------- evaluate checks
@pytest.mark.parametrize("tolerance", ["-5", "nan", "inf", "-inf", "abc"])
def test_evaluate_tolerance_must_be_finite_and_non_negative(tmp_path, capsys, tolerance) -> None:
    # a missing model file would be exit code 1: code 2 shows nothing was loaded
    assert (
        cli.main(["evaluate", "--model", str(tmp_path / "missing.keras"), "--tolerance", tolerance])
        == 2
    )
    err = capsys.readouterr().err
    assert "--tolerance" in err and "Traceback" not in err


@pytest.mark.parametrize(
    "key, message",
    [
        ("../outside.png", "leaves the --images folder"),
        ("sub/../../outside.png", "leaves the --images folder"),
        ("link.png", "leaves the --images folder"),
        ("ABSOLUTE", "absolute path"),
    ],
)
def test_box_file_keys_stay_inside_the_images_folder(
    workspace, tmp_path, capsys, key, message
) -> None:
    folder = tmp_path / "images"
    (folder / "sub").mkdir(parents=True)
    outside = tmp_path / "outside.png"
    shutil.copy(workspace / "images" / "im0.png", outside)
    os.symlink(outside, folder / "link.png")
    key = str(outside) if key == "ABSOLUTE" else key
    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps({key: [{"class": 1, "box": [0, 0, 4, 4]}]}))
    assert (
        cli.main(
            [
                "evaluate",
                "--model",
                str(workspace / "tiny.keras"),
                "--images",
                str(folder),
                "--boxes",
                str(boxes),
                "--methods",
                "gradient",
                "-q",
            ]
        )
        == 1
    )
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_box_file_keys_may_name_subfolders(workspace, tmp_path, capsys) -> None:
    folder = tmp_path / "images"
    (folder / "sub").mkdir(parents=True)
    shutil.copy(workspace / "images" / "im0.png", folder / "sub" / "a.png")
    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps({"sub/a.png": [{"class": 1, "box": [0, 0, 10, 12]}]}))
    assert (
        cli.main(
            [
                "evaluate",
                "--model",
                str(workspace / "tiny.keras"),
                "--images",
                str(folder),
                "--boxes",
                str(boxes),
                "--methods",
                "gradient",
                "-q",
            ]
        )
        == 0
    )
    assert "1 (image, class) pairs" in capsys.readouterr().out


# ----------------------------------------------------------------------------- pixel limit
def _png_header(width: int, height: int) -> bytes:
    """A PNG signature and IHDR chunk claiming width x height, followed by no pixel data."""
    import struct
    import zlib

    body = b"IHDR" + struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + struct.pack(">I", 13)
        + body
        + struct.pack(">I", zlib.crc32(body))
        + b"\x00" * 64
    )


def test_images_over_the_pixel_limit_are_refused_before_decoding(
    workspace, tmp_path, capsys
) -> None:
    huge = tmp_path / "huge.png"
    huge.write_bytes(_png_header(20000, 20000))  # 400 MP by its header, no pixel data
    model = str(workspace / "tiny.keras")
    assert cli.main(["explain", model, str(huge), "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert "20000x20000 = 400 megapixels" in err and "--max-megapixels" in err
    # raising the limit lets it through to the decoder (which finds no pixel data)
    assert (
        cli.main(
            ["explain", model, str(huge), "--out", str(tmp_path / "o"), "--max-megapixels", "500"]
        )
        == 1
    )
    assert "cannot read image" in capsys.readouterr().err
    rng = np.random.default_rng(1)
    photo = rng.integers(0, 255, (30, 40, 3), np.uint8)
    files = {
        "p.png": [],
        "b.jpg": [],
        "p.jpg": [cv2.IMWRITE_JPEG_PROGRESSIVE, 1],
        "x.bmp": [],
        "t.tiff": [],
    }
    for name, params in files.items():
        cv2.imwrite(str(tmp_path / name), photo, params)
        assert (
            cli.main(
                [
                    "explain",
                    model,
                    str(tmp_path / name),
                    "--out",
                    str(tmp_path / "o"),
                    "--max-megapixels",
                    "0.0011",
                ]
            )
            == 1
        ), name  # 1200 px > 1100
        assert "40x30 = 0 megapixels" in capsys.readouterr().err
    for name in ("p.jpg", "t.tiff"):
        assert (
            cli.main(
                [
                    "explain",
                    model,
                    str(tmp_path / name),
                    "--out",
                    str(tmp_path / "ok"),
                    "--max-megapixels",
                    "0.0012",
                    "-q",
                    "--methods",
                    "gradient",
                ]
            )
            == 0
        )  # 1200 px = the limit


def test_image_size_reads_headers(tmp_path) -> None:
    from tf_clrp.cli.images import image_size

    rng = np.random.default_rng(2)
    for shape in ((7, 300, 3), (513, 9, 3), (64, 65, 1)):
        photo = rng.integers(0, 255, shape, np.uint8)
        for ext in (".png", ".jpg", ".bmp", ".webp", ".tiff"):
            path = str(tmp_path / f"im{shape[0]}{ext}")
            cv2.imwrite(path, photo)
            decoded = cv2.imread(path, cv2.IMREAD_UNCHANGED)
            assert image_size(path) == decoded.shape[:2], path
    (tmp_path / "junk.png").write_bytes(b"not an image at all")
    assert image_size(str(tmp_path / "junk.png")) is None


# ----------------------------------------------------------------------------- --out problems
def test_out_problems_are_one_line_errors(workspace, tmp_path, capsys) -> None:
    a_file = tmp_path / "a_file"
    a_file.write_text("mine")
    argv = [
        "explain",
        str(workspace / "tiny.keras"),
        str(workspace / "images" / "im0.png"),
        "--methods",
        "gradient",
        "-q",
    ]
    for out, message in ((a_file, "is not a folder"), (a_file / "sub", "is a file")):
        assert cli.main([*argv, "--out", str(out)]) == 1
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err and len(err.splitlines()) == 1
    assert a_file.read_text() == "mine"


@pytest.mark.skipif(
    not hasattr(os, "fork") or sys.platform == "win32", reason="RLIMIT_FSIZE is POSIX"
)
def test_a_failing_write_leaves_no_png_without_its_npz(tmp_path) -> None:
    """A file-size limit between the PNG's and the .npz's size makes the .npz write fail."""
    keras.utils.set_random_seed(4)
    model = keras.Sequential(
        [
            keras.Input((96, 96, 3)),
            keras.layers.Conv2D(2, 3),
            keras.layers.Flatten(),
            keras.layers.Dense(3),
        ]
    )
    model.save(tmp_path / "m.keras")
    rng = np.random.default_rng(5)
    cv2.imwrite(str(tmp_path / "im.png"), rng.integers(0, 255, (96, 96, 3), np.uint8))
    argv = [
        "explain",
        str(tmp_path / "m.keras"),
        str(tmp_path / "im.png"),
        "--methods",
        "gradient,lrp.z",
        "--top-k",
        "3",
        "-q",
        "--out",
    ]
    assert cli.main([*argv, str(tmp_path / "free")]) == 0
    png, npz = ((tmp_path / "free" / f"im.{ext}").stat().st_size for ext in ("png", "npz"))
    assert png < npz  # the limit below fails the .npz, whichever file is written first
    limit = (png + npz) // 2
    code = (
        "import resource, signal, sys\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        f"resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit}))\n"
        "from tf_clrp.cli import main\n"
        f"sys.exit(main({[*argv, str(tmp_path / 'full')]!r}))\n"
    )
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHONPATH": root},
    )
    assert done.returncode == 1, done.stderr
    assert "tf-clrp: error: cannot write" in done.stderr and "Traceback" not in done.stderr
    left = sorted(os.listdir(tmp_path / "full"))
    assert left == [], left  # no PNG without its .npz, no temporary files


# ----------------------------------------------------------------------------- quiet TensorFlow
def test_explain_prints_no_tensorflow_log_lines(workspace, tmp_path) -> None:
    import re

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {k: v for k, v in os.environ.items() if not k.startswith("TF_CPP_")}
    env["PYTHONPATH"] = root
    log_line = re.compile(
        r"^[IWEF]\d{4} |absl::InitializeLog|oneDNN|cuda|cuInit|"
        r"cpu_feature_guard",
        re.MULTILINE,
    )
    stderr = {}
    for flag in ([], ["--verbose"]):
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "tf_clrp.cli",
                "explain",
                str(workspace / "tiny.keras"),
                str(workspace / "images" / "im0.png"),
                "--methods",
                "lrp.z_plus,clrp",
                "-q",
                "--out",
                str(tmp_path / f"out{len(flag)}"),
                *flag,
            ],
            capture_output=True,
            text=True,
            timeout=600,
            env=env,
        )
        assert done.returncode == 0, done.stderr
        stderr[bool(flag)] = done.stderr
    assert not log_line.search(stderr[False]), stderr[False]
    # --verbose keeps them: TensorFlow 2.21 on Linux logs oneDNN/CUDA notices at import
    assert log_line.search(stderr[True]), stderr[True]
