"""The documentation site: ``mkdocs build --strict`` passes, and every public object of the
API reference has a docstring.

The build runs offline (mkdocs-material with ``font: false`` loads nothing at build time) and
needs the ``test`` extra (mkdocs, mkdocs-material, mkdocstrings[python]); without them these
tests fail rather than skip.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
INSTALL_HINT = "the docs tests need the test extra: pip install -e '.[test]'"


def _build(root: Path, site: Path) -> subprocess.CompletedProcess:
    try:
        import material  # noqa: F401
        import mkdocs  # noqa: F401
        import mkdocstrings  # noqa: F401
    except ImportError as error:  # not a skip: a missing tool must not hide broken docs
        pytest.fail(f"{error}; {INSTALL_HINT}")
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
        env={
            "NO_MKDOCS_2_WARNING": "1",
            "PATH": "/usr/bin:/bin",
            "HOME": str(site.parent),
            "PYTHONPATH": str(root),
        },
    )


def test_site_builds_strictly_with_reference_and_figures(tmp_path) -> None:
    site = tmp_path / "site"
    result = _build(ROOT, site)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "WARNING" not in result.stderr
    api = (site / "api" / "index.html").read_text()
    for name in (
        "tf_clrp.registry.create_analyzer",
        "tf_clrp.analyzers.contrastive.CLRP",
        "tf_clrp.callbacks.HeatmapCallback",
        "tf_clrp.logits.model_wo_softmax",
        "tf_clrp.figures.class_contrast_figure",
    ):
        assert f'id="{name}"' in api, name
    home = (site / "index.html").read_text()
    assert 'src="figures/demo_mosaic.png"' in home and (site / "figures/demo_mosaic.png").exists()
    benchmarks = (site / "benchmarks" / "index.html").read_text()
    figures = re.findall(r'<img[^>]*src="\.\./(figures/[^"]+\.png)"', benchmarks)
    assert len(figures) >= 4 and all((site / f).exists() for f in figures)
    assert (site / "which-method" / "index.html").exists()


def test_a_broken_link_fails_the_build(tmp_path) -> None:
    copy = tmp_path / "repo"
    copy.mkdir()
    for name in ("mkdocs.yml", "README.md", "BENCHMARKS.md"):
        shutil.copy(ROOT / name, copy / name)
    shutil.copytree(ROOT / "docs", copy / "docs")
    shutil.copytree(
        ROOT / "tf_clrp", copy / "tf_clrp", ignore=shutil.ignore_patterns("__pycache__", "data")
    )
    page = copy / "docs" / "metrics.md"
    page.write_text(page.read_text() + "\nSee [the missing page](no_such_page.md).\n")
    result = _build(copy, tmp_path / "site")
    assert result.returncode != 0
    assert "no_such_page.md" in result.stderr


def _documented_modules() -> list[str]:
    return re.findall(r"^::: (\S+)", (ROOT / "docs" / "api.md").read_text(), re.M)


def test_every_public_object_in_the_reference_has_a_docstring() -> None:
    import griffe

    package = griffe.load("tf_clrp", search_paths=[str(ROOT)])
    missing = []
    modules = _documented_modules()
    assert len(modules) >= 20
    for path in modules:
        module = package[path.removeprefix("tf_clrp.")]
        if not module.docstring:
            missing.append(path)
        names = (
            module.exports
            if module.exports is not None
            else [n for n in module.members if not n.startswith("_")]
        )
        for name in map(str, names):
            member = module.members.get(name)
            if member is None or member.is_alias or member.kind.value not in ("function", "class"):
                continue
            if not member.docstring:
                missing.append(f"{path}.{name}")
            if member.kind.value != "class":
                continue
            for method_name, method in member.members.items():
                if (
                    method_name.startswith("_")
                    or method.is_alias
                    or method.kind.value != "function"
                    or method.docstring
                ):
                    continue
                inherited = any(
                    base.members.get(method_name) is not None
                    and base.members[method_name].docstring
                    for base in member.mro()
                )
                if not inherited:
                    missing.append(f"{path}.{name}.{method_name}")
    assert missing == [], f"public objects without a docstring: {missing}"


def test_every_docs_page_is_in_the_site() -> None:
    config = (ROOT / "mkdocs.yml").read_text()
    pages = {p.name for p in (ROOT / "docs").glob("*.md")} - {"CONTRACT.md"}
    in_nav = set(re.findall(r":\s*([\w-]+\.md)\s*$", config, re.M))
    assert pages == in_nav, pages ^ in_nav
