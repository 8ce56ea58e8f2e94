"""The CLI's fast paths: no TensorFlow for --help/--version/list, help text for every option."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

import pytest

import tf_clrp
from tf_clrp.cli import build_parser
from tf_clrp.cli.names import ANALYZER_GROUPS, analyzer_names

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _python(code: str, **env: str) -> subprocess.CompletedProcess:
    environment = {**os.environ, "PYTHONPATH": ROOT, **env}
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=environment,
        timeout=300,
        cwd=ROOT,
    )


@pytest.mark.parametrize(
    "argv",
    [
        ["--help"],
        ["--version"],
        ["list"],
        ["explain", "--help"],
        ["--verbose", "list"],
        ["list", "--debug", "--verbose"],
    ],
)
def test_quick_commands_import_no_tensorflow(argv) -> None:
    done = _python(
        "import contextlib, io, sys\n"
        "from tf_clrp.cli import main\n"
        "out = io.StringIO()\n"
        f"with contextlib.redirect_stdout(out):\n    rc = main({argv!r})\n"
        "heavy = sorted(m for m in ('tensorflow', 'keras', 'cv2', 'matplotlib') "
        "if m in sys.modules)\n"
        "assert rc == 0, rc\n"
        "assert not heavy, heavy\n"
        "print(out.getvalue())\n"
    )
    assert done.returncode == 0, done.stderr
    assert (
        "clrp" if "list" in argv else "tf" if argv != ["--version"] else tf_clrp.__version__
    ) in done.stdout
    assert not done.stderr


def test_static_analyzer_table_equals_the_registry() -> None:
    from tf_clrp.registry import ANALYZERS

    assert analyzer_names() == tf_clrp.list_analyzers() == sorted(ANALYZERS)
    listed = [name for group in ANALYZER_GROUPS.values() for name in group]
    assert len(listed) == len(set(listed)), "a name is in two groups"


def _all_actions(parser: argparse.ArgumentParser, path: str = "tf-clrp"):
    for action in parser._actions:
        yield path, action
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _all_actions(sub, f"{path} {name}")


def test_every_option_has_help() -> None:
    actions = list(_all_actions(build_parser()))
    assert len(actions) > 40  # every command's options are visited
    missing = [
        f"{path} {'/'.join(a.option_strings) or a.dest}"
        for path, a in actions
        if not (a.help or "").strip() or a.help == argparse.SUPPRESS
    ]
    assert not missing, missing


def test_list_options_prints_each_entrys_options_without_tensorflow() -> None:
    from tf_clrp.registry import ANALYZERS

    done = _python(
        "import sys\nfrom tf_clrp.cli import main\n"
        "rc = main(['list', '--options'])\n"
        "assert not [m for m in ('tensorflow', 'keras') if m in sys.modules]\n"
        "raise SystemExit(rc)"
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    for name, declared in ANALYZERS.items():
        shown = lines[
            lines.index(f"  {name}") + 1
            if f"  {name}" in lines
            else next(i for i, line in enumerate(lines) if line.startswith(f"  {name}  (")) + 1
        ]
        for option, default in declared.options.items():
            assert f"{option}={default!r}" in shown, (name, option, shown)
        assert ("z^B input bounds" in shown) == (declared.input_bounds is not None), name
