"""Regenerate ``tf_clrp/data/imagenet_classes.txt`` from timm's bundled metadata.

Developer script, not imported at runtime. timm's package data is read straight from its
install folder (``importlib.util.find_spec``), so neither timm nor torch is imported; timm
may be installed with ``pip install --no-deps timm``.

Usage::

    python tf_clrp/zoo/_make_imagenet_classes.py
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "data" / "imagenet_classes.txt"


def timm_info_dir() -> Path:
    """Return timm's ``data/_info`` folder.

    Returns:
        Path of the folder holding ``imagenet_synsets.txt``.
    """
    spec = importlib.util.find_spec("timm")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("timm is not installed: pip install --no-deps timm")
    return Path(next(iter(spec.submodule_search_locations))) / "data" / "_info"


def make_class_names(info: Path) -> list[str]:
    """Build the 1000 class descriptions in ImageNet-1k index order.

    Args:
        info: timm's ``data/_info`` folder.

    Returns:
        One lemma string per class, e.g. ``"tabby, tabby cat"``.
    """
    synsets = (info / "imagenet_synsets.txt").read_text().split()
    lemmas = {}
    for line in (info / "imagenet_synset_to_lemma.txt").read_text().splitlines():
        wnid, _, lemma = line.partition("\t")
        lemmas[wnid.strip()] = lemma.strip()
    if len(synsets) != 1000:
        raise SystemExit(f"expected 1000 synsets, found {len(synsets)}")
    return [lemmas[s] for s in synsets]


def main() -> int:
    """Write the class-name file.

    Returns:
        Process exit status.
    """
    names = make_class_names(timm_info_dir())
    OUT.write_text("\n".join(names) + "\n", encoding="utf-8")
    print(f"wrote {len(names)} names to {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
