"""House style: the repository is ruff-clean and ruff-formatted with pyproject.toml's settings."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PATHS = ("tf_clrp", "tests", "benchmarks", "examples")


@pytest.mark.skipif(shutil.which("ruff") is None, reason="ruff is not installed")
def test_ruff_check_is_clean() -> None:
    done = subprocess.run(
        ["ruff", "check", "--no-cache", *PATHS],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-1000:]


@pytest.mark.skipif(shutil.which("ruff") is None, reason="ruff is not installed")
def test_ruff_format_is_clean() -> None:
    """One formatter configuration (pyproject.toml), applied everywhere."""
    done = subprocess.run(
        ["ruff", "format", "--check", "--no-cache", *PATHS],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-1000:]


def test_relative_imports_are_refused(tmp_path: Path) -> None:
    """The configuration bans ``from .x import y`` (absolute imports everywhere)."""
    if shutil.which("ruff") is None:
        pytest.skip("ruff is not installed")
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text('from .a import b\n\n__all__ = ["b"]\n')
    (package / "a.py").write_text("b = 1\n")
    done = subprocess.run(
        ["ruff", "check", "--no-cache", "--config", str(ROOT / "pyproject.toml"), str(package)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1 and "TID252" in done.stdout, done.stdout
