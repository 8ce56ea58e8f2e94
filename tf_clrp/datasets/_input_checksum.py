"""Per-shard CRC-32 of the input samples, so a resume with other data is refused.

When a shard is written, the CRC-32 of its input samples (as C-ordered float32 bytes, in
sample order) is recorded in its manifest entry as ``input_crc32``. When resuming, the
samples of the kept shards are read as they are skipped, hashed shard by shard and
compared. CRC-32 over a stream does not depend on how the samples are batched.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from tf_clrp.datasets._common import ResumeMismatchError

#: The key of a shard record holding the CRC-32 of the shard's input samples.
KEY = "input_crc32"


def update(crc: int, images: np.ndarray) -> int:
    """``crc`` continued over the float32 bytes of ``images``.

    Numbers (bool, int, float) are hashed as float32; other arrays (strings) by their own
    bytes, object arrays by the ``repr`` of their elements.
    """
    images = np.asarray(images)
    if images.dtype.kind in "biuf":
        array = np.ascontiguousarray(images, dtype=np.float32)
    elif images.dtype.hasobject:
        for element in images.reshape(-1):
            crc = zlib.crc32(repr(element).encode() + b"\0", crc)
        return crc
    else:
        array = np.ascontiguousarray(images)
    return zlib.crc32(array.reshape(-1).view(np.uint8), crc)


def _data_error(out: Path, line: str) -> ResumeMismatchError:
    return ResumeMismatchError(
        f"{out} holds a run made with other data:\n  {line}\nThe data must arrive in the "
        "same order on every run. Use another out_dir, or resume=False to discard the "
        "stored run."
    )


class SkippedInputs:
    """Checks the samples skipped on resume against the kept shards' input checksums.

    Called with (images, labels, global indices) for consecutive skipped samples from 0;
    ``labels_check`` (if given) sees (labels, indices). Shards recorded without a checksum
    (written by an older tf_clrp) are not compared.
    """

    def __init__(
        self,
        out: Path,
        shards: list[dict[str, Any]],
        labels_check: Callable[[np.ndarray | None, np.ndarray], None] | None = None,
    ) -> None:
        self.out = out
        self.shards = list(shards)  # the run appends its new shards to the original
        self.labels_check = labels_check
        self.current = 0
        self.crc = 0
        self.seen = 0

    def __call__(self, images: np.ndarray, labels: np.ndarray | None, index: np.ndarray) -> None:
        if self.labels_check is not None:
            self.labels_check(labels, index)
        offset = 0
        while offset < len(images) and self.current < len(self.shards):
            shard = self.shards[self.current]
            take = min(len(images) - offset, shard["stop"] - self.seen)
            if KEY in shard:
                self.crc = update(self.crc, images[offset : offset + take])
            offset += take
            self.seen += take
            if self.seen == shard["stop"]:
                self._compare(shard)

    def _compare(self, shard: dict[str, Any]) -> None:
        if KEY in shard and self.crc != shard[KEY]:
            raise _data_error(
                self.out,
                f"the data differ from the stored run at samples "
                f"{shard['start']}–{shard['stop'] - 1} (shard {shard['file']}: input "
                f"CRC-32 stored {shard[KEY]:08x}, now {self.crc:08x})",
            )
        self.current += 1
        self.crc = 0

    def finish(self) -> None:
        """Raises if the data ended before all kept shards' samples were seen."""
        if self.current < len(self.shards):
            raise _data_error(
                self.out,
                f"the data end after {self.seen} samples, but the stored run "
                f"has {self.shards[-1]['stop']} finished samples",
            )
