"""MkDocs hook: pages that mirror a file of the repository root (README, BENCHMARKS).

A docs page whose only content is ``<!-- mirror: NAME.md -->`` is replaced, at build time, by
that root file with its links rewritten for the site (``docs/x.md`` → ``x.md``,
``BENCHMARKS.md`` → ``benchmarks.md``), so the repository and the site share one source.
On pages marked in :data:`ROOT_PAGES`, links to PNG figures become inline images (the
repository file keeps them as links to stay short).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

MIRROR = re.compile(r"^\s*<!--\s*mirror:\s*(?P<name>[\w.-]+\.md)\s*-->\s*$")
#: Root file → (page name on the site, show linked PNG figures inline).
ROOT_PAGES = {"README.md": ("index.md", False), "BENCHMARKS.md": ("benchmarks.md", True)}


def rewrite_links(markdown: str, inline_figures: bool = False) -> str:
    """Rewrites repository-relative links of a root file into site-relative ones.

    Args:
        markdown: The root file's text.
        inline_figures: Turn ``[text](figure.png)`` links into images.

    Returns:
        The text for the site.
    """
    markdown = re.sub(r"\]\(docs/", "](", markdown)
    if inline_figures:
        markdown = re.sub(r"(?<!!)\[([^\]]+)\]\(([^)\s]+\.png)\)", r"![\1](\2)", markdown)
    for root, (page, _) in ROOT_PAGES.items():
        markdown = re.sub(rf"\]\({re.escape(root)}(#[^)]*)?\)",
                          lambda m, p=page: f"]({p}{m.group(1) or ''})", markdown)
    return markdown


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """Replaces a mirror marker by the root file's text."""
    match = MIRROR.match(markdown)
    if match is None:
        return markdown
    root = Path(config["docs_dir"]).parent / match["name"]
    _, inline = ROOT_PAGES.get(match["name"], ("", False))
    return rewrite_links(root.read_text(encoding="utf-8"), inline)
