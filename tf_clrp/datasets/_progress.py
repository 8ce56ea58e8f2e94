"""A progress display for explain_dataset."""

from __future__ import annotations

import sys

from tf_clrp._io import progress_bar


class Progress:
    """tqdm if available (and wanted), else one line per shard on stderr, else nothing."""

    def __init__(self, enabled: bool, total: int | None, initial: int) -> None:
        self.enabled = enabled
        self.bar = (
            progress_bar(
                total=total, initial=initial, unit="sample", desc="explaining", dynamic_ncols=True
            )
            if enabled
            else None
        )

    def update(self, n: int) -> None:
        """Advances the bar by ``n`` samples."""
        if self.bar is not None:
            self.bar.update(n)

    def shard_done(self, name: str, completed: int) -> None:
        """Reports a written shard (one stderr line when there is no bar)."""
        if self.enabled and self.bar is None:
            print(f"tf_clrp: wrote {name} ({completed} samples done)", file=sys.stderr)

    def close(self) -> None:
        """Closes the bar."""
        if self.bar is not None:
            self.bar.close()
