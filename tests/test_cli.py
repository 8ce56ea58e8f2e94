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
from tf_clrp.cli import common, demo, evaluate


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A saved tiny 5-class model, three PNG images, an unreadable file and a box file."""
    root = tmp_path_factory.mktemp("cli")
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((16, 16, 3)),
        keras.layers.Conv2D(4, 3, activation="relu", padding="same"),
        keras.layers.MaxPooling2D(),
        keras.layers.Flatten(),
        keras.layers.Dense(5, activation="softmax"),
    ])
    model.save(root / "tiny.keras")
    images = root / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        cv2.imwrite(str(images / f"im{i}.png"), rng.integers(0, 255, (20, 24, 3), np.uint8))
    (root / "broken.jpg").write_bytes(b"this is not a jpeg")
    (root / "boxes.json").write_text(json.dumps({
        "im0.png": [{"class": 1, "box": [0, 0, 10, 12]}],
        "im1.png": [{"class": 2, "box": [10, 12, 20, 24]}, {"class": 2, "box": [0, 0, 4, 4]},
                    {"class": 4, "box": [0, 12, 10, 24]}],
    }))
    return root


def _tiny_imagenet_model() -> keras.Model:
    """A fast stand-in for EfficientNet-Lite0: 224x224x3 in, 1000 logits out."""
    keras.utils.set_random_seed(1)
    return keras.Sequential([
        keras.Input((224, 224, 3)),
        keras.layers.Conv2D(4, 8, strides=8, activation="relu"),
        keras.layers.AveragePooling2D(4),
        keras.layers.Flatten(),
        keras.layers.Dense(1000),
    ])


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
    args = ["explain", str(workspace / "tiny.keras"), str(workspace / "images" / "im0.png"),
            str(workspace / "images" / "im1.png"), "--methods", "clrp,lrp.z_plus,gradient",
            "--top-k", "2", "--preprocess", "unit", "--out", str(out), "-q"]
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
        assert cli.main(["explain", str(workspace / "tiny.keras"),
                         str(workspace / "images" / "im0.png"), "--methods",
                         "clrp,lrp.z_plus,occlusion", "--classes", "1", "--out", str(out),
                         "-q", "--precision", precision]) == 0
        maps[precision] = np.load(out / "im0.npz")
    for method in ("clrp", "lrp.z_plus"):
        exact, low = maps["float32"][method], maps["bfloat16"][method]
        assert np.abs(exact - low).max() <= 5e-2 * np.abs(exact).max()
    model = keras.models.load_model(workspace / "tiny.keras")
    assert common._create("clrp", model, None, False, "bfloat16").precision == "bfloat16"
    assert common._create("occlusion", model, None, False, "bfloat16") is not None  # no option
    assert cli.main(["explain", str(workspace / "tiny.keras"),
                     str(workspace / "images" / "im0.png"), "--precision", "fp8"]) == 2


def test_explain_folder_and_duplicate_names(workspace, tmp_path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(workspace / "images" / "im0.png", other / "im0.png")
    out = tmp_path / "out"
    assert cli.main(["explain", str(workspace / "tiny.keras"), str(workspace / "images"),
                     str(other), "--methods", "gradient", "--out", str(out), "-q",
                     "--batch-size", "2"]) == 0
    names = sorted(os.listdir(out))
    assert names == ["im0.npz", "im0.png", "im0_2.npz", "im0_2.png", "im1.npz", "im1.png",
                     "im2.npz", "im2.png"]


def test_explain_every_method(workspace, tmp_path) -> None:
    import tf_clrp

    methods = [m for m in tf_clrp.list_analyzers() if m != "lrp"]
    out = tmp_path / "all"
    assert cli.main(["explain", str(workspace / "tiny.keras"),
                     str(workspace / "images" / "im1.png"), str(workspace / "images" / "im2.png"),
                     "--methods", ",".join(methods),
                     "--classes", "2", "--out", str(out), "-q", "--preprocess", "unit"]) == 0
    data = np.load(out / "im2.npz")
    for method in methods:
        assert data[method].shape == (1, 16, 16, 3) and np.isfinite(data[method]).all()


@pytest.mark.parametrize("argv_tail, code, message", [
    (["--methods", "clrp,nope"], 2, "unknown method(s) 'nope'"),
    (["--methods", "lrp"], 2, "needs a composite"),
    (["--classes", "1,9"], 2, "has 5 outputs"),
    (["--classes", "a"], 2, "comma-separated ints"),
    (["--size", "8", "8"], 2, "does not match the model's input"),
    (["--batch-size", "0"], 2, "--batch-size"),
    (["--preprocess", "bogus"], 2, "invalid choice"),
])
def test_explain_usage_errors(workspace, tmp_path, capsys, argv_tail, code, message) -> None:
    argv = ["explain", str(workspace / "tiny.keras"), str(workspace / "images" / "im0.png"),
            "--out", str(tmp_path / "o"), *argv_tail]
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
    argv = ["evaluate", "--model", str(workspace / "tiny.keras"), "--images",
            str(workspace / "images"), "--boxes", str(workspace / "boxes.json"),
            "--methods", "gradient,clrp", "--preprocess", "unit", "-q"]
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
    base = ["evaluate", "--model", str(workspace / "tiny.keras"), "--images",
            str(workspace / "images"), "--methods", "gradient"]
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
    monkeypatch.setattr(evaluate, "_efficientnet", _tiny_imagenet_model)
    assert cli.main(["evaluate", "--n", "1", "--methods", "gradient,lrp.epsilon_plus",
                     "-q"]) == 0
    out = capsys.readouterr().out
    assert "built-in 2x2 mosaics" in out and "lrp.epsilon_plus" in out
    assert "(random point)" in out and "(center baseline)" not in out


# ----------------------------------------------------------------------------- demo
def test_demo_pipeline_with_a_small_model(monkeypatch, tmp_path, capsys) -> None:
    monkeypatch.setattr(demo, "_efficientnet", _tiny_imagenet_model)
    out = tmp_path / "demo"
    assert cli.main(["demo", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert str(out / "comparison.png") in printed
    assert sorted(os.listdir(out)) == ["comparison.png", "report.txt"]
    report = (out / "report.txt").read_text()
    for text in ("Top-5 predictions", "chelsea", "mosaic", "clrp", "Pointing Game", "total"):
        assert text in report
    figure = cv2.imread(str(out / "comparison.png"))
    assert figure.shape[0] > figure.shape[1]  # 6 rows x 5 columns
    assert cli.main(["demo", "--out", str(out)]) == 1  # no overwrite without --force
    assert "use --force" in capsys.readouterr().err
    assert cli.main(["demo", "--out", str(out), "--force", "-q",
                     "--methods", "gradient"]) == 0


@pytest.mark.slow
def test_demo_with_efficientnet(tmp_path) -> None:
    assert cli.main(["demo", "--out", str(tmp_path), "--force", "-q"]) == 0
    report = (tmp_path / "report.txt").read_text()
    assert "Egyptian cat" in report and "espresso" in report
