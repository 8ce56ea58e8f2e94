"""The analyzer names the CLI prints and accepts, read from the registry's entries.

``tf_clrp.registry`` declares every name without importing TensorFlow, so ``tf-clrp list``
reads it directly.
"""

from __future__ import annotations

from tf_clrp.registry import ENTRIES, FAMILIES


def _groups() -> dict[str, tuple[str, ...]]:
    families = [*FAMILIES, *(e.family for e in ENTRIES if e.family not in FAMILIES)]
    groups = {
        FAMILIES.get(f, f): tuple(sorted(e.name for e in ENTRIES if e.family == f))
        for f in dict.fromkeys(families)
    }
    return {title: names for title, names in groups.items() if names}


#: Group title -> analyzer names of ``tf_clrp.list_analyzers()``, in print order.
ANALYZER_GROUPS: dict[str, tuple[str, ...]] = _groups()
#: Names that ``create_analyzer`` knows but the CLI cannot build (they need Python objects).
PYTHON_ONLY: dict[str, str] = {e.name: e.python_only for e in ENTRIES if e.python_only}


def analyzer_names() -> list[str]:
    """Every analyzer name, sorted (equals ``tf_clrp.list_analyzers()``)."""
    return sorted(name for group in ANALYZER_GROUPS.values() for name in group)


def cli_methods() -> list[str]:
    """The names ``--methods`` accepts: every analyzer the CLI can build, sorted."""
    return [name for name in analyzer_names() if name not in PYTHON_ONLY]
