"""Deciding whether a stored run can be continued with the settings given now."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np

from tf_clrp.datasets import _input_checksum, _integrity
from tf_clrp.datasets._common import FORMAT_VERSION, ResumeMismatchError, ShardIntegrityError
from tf_clrp.datasets._reader import DatasetExplanation
from tf_clrp.datasets._selection import labels_to_indices, unit_values

#: Manifest entries that must be equal to resume (``neuron_selection`` is compared apart).
COMPARED = (
    "format",
    "shard_size",
    "analyzer",
    "model",
    "analyze_kwargs",
    "input_shape",
    "n_samples_expected",
)
#: Selection kinds that stand for one unit index per sample (comparable by their values).
INDEX_SELECTIONS = ("labels", "unit", "per_sample")
#: Informative entries, never compared (auto-generated names differ between sessions).
_IGNORED = ("model.name", "analyzer.given")
_OPTIONS = "analyzer.options."
_MAX_SHOWN = 8
_MAX_VALUE = 60
_MAX_LINE = 200


def selection_kind(description: Any) -> str:
    """ "labels", "unit", "per_sample", "callable", or the selection string itself."""
    if isinstance(description, dict):
        return next(iter(description))
    return str(description)


def differences(old: Any, new: Any, path: str) -> list[tuple[str, Any, Any]]:
    """The leaves (path, old, new) where two JSON values differ."""
    if isinstance(old, dict) and isinstance(new, dict):
        found = []
        for key in sorted(set(old) | set(new)):
            found += differences(old.get(key), new.get(key), f"{path}.{key}")
        return found
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        found = []
        for i, (a, b) in enumerate(zip(old, new)):
            found += differences(a, b, f"{path}[{i}]")
        return found
    return [] if old == new else [(path, old, new)]


def _user_settings_first(
    found: list[tuple[str, Any, Any]], given: set[str]
) -> list[tuple[str, Any, Any]]:
    """Drops differences in derived analyzer attributes when a given option explains them."""

    def option(path: str) -> str | None:
        return (
            path[len(_OPTIONS) :].split(".")[0].split("[")[0] if path.startswith(_OPTIONS) else None
        )

    if not any(option(path) in given for path, _, _ in found):
        return found
    return [f for f in found if option(f[0]) is None or option(f[0]) in given]


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= _MAX_VALUE else text[: _MAX_VALUE - 3] + "..."


def _leaf_name(path: str) -> str:
    """The readable part of a leaf path (hash-only leaves are named by their owner)."""
    for suffix in (".weights", ".architecture"):
        if path.endswith(suffix):
            return path[: -len(suffix)] + suffix
    return path


def _difference_line(path: str, old: Any, new: Any) -> str:
    """One difference, at most ``_MAX_LINE`` characters."""
    if path.endswith((".weights", ".architecture", ".code")):
        line = f"{_leaf_name(path)}: differs"
    else:
        line = f"{path}: stored {_short(old)}, now {_short(new)}"
    return line if len(line) <= _MAX_LINE else line[: _MAX_LINE - 3] + "..."


def mismatch_error(out_dir: Path, found: list[tuple[str, Any, Any]]) -> ResumeMismatchError:
    """A short ResumeMismatchError listing only the differing settings.

    When the analyzer's name differs, only that line is shown (its options then differ as
    a consequence) with a count of the other differing settings.
    """
    name = next((f for f in found if f[0] == "analyzer.name"), None)
    if name is not None:
        lines = [_difference_line(*name)]
        if len(found) > 1:
            lines.append(
                f"(and {len(found) - 1} other differing setting(s), mostly the analyzer's options)"
            )
        return _mismatch_message(out_dir, lines)
    lines = [_difference_line(*f) for f in found[:_MAX_SHOWN]]
    if len(found) > _MAX_SHOWN:
        lines.append(f"... and {len(found) - _MAX_SHOWN} more")
    return _mismatch_message(out_dir, lines)


def _mismatch_message(out_dir: Path, lines: list[str]) -> ResumeMismatchError:
    return ResumeMismatchError(
        f"{out_dir} holds a run made with other settings:\n"
        + "\n".join(f"  {line}" for line in lines)
        + "\nUse another out_dir, or resume=False to discard the stored run."
    )


def check_version(old: dict[str, Any], out_dir: Path) -> None:
    """Refuses to resume a folder written with another layout version."""
    version = old.get("format_version")
    if version == FORMAT_VERSION:
        return
    if isinstance(version, int) and version < FORMAT_VERSION:
        raise ResumeMismatchError(
            f"{out_dir} was written by an older tf_clrp (folder format {version}; this "
            f"version writes format {FORMAT_VERSION}, with model fingerprints and shard "
            "checksums) and cannot be resumed. load_explanations still reads it; to "
            "recompute, use another out_dir or resume=False."
        )
    raise ResumeMismatchError(
        f"{out_dir} was written by a newer tf_clrp (folder format {version!r}; this version "
        f"knows format {FORMAT_VERSION}). Upgrade tf_clrp or use another out_dir."
    )


def check_fingerprintable(old: dict[str, Any], new: dict[str, Any], out_dir: Path) -> None:
    """Refuses to resume when either run has settings that could not be fingerprinted."""
    problems = list(new.get("unverifiable") or []) + [
        f"{p} (stored run)" for p in old.get("unverifiable") or []
    ]
    if problems:
        shown = "; ".join(problems[:4]) + (" ..." if len(problems) > 4 else "")
        raise ResumeMismatchError(
            f"cannot resume {out_dir}: some settings cannot be fingerprinted reliably, so "
            f"tf_clrp cannot tell whether they match the stored run ({shown}). Use another "
            "out_dir or resume=False, or pass a plain function / array / string instead."
        )


def compare(old: dict[str, Any], new: dict[str, Any], out_dir: Path) -> bool:
    """Checks ``new`` settings against the stored ones.

    Returns:
        True if the selections differ in form but are both per-sample unit indices
        ("labels", an int, one int per sample): the caller must then compare their values
        for the finished samples.

    Raises:
        ResumeMismatchError: a setting differs (only the differing ones are listed).
    """
    check_version(old, out_dir)
    check_fingerprintable(old, new, out_dir)
    found = []
    for key in COMPARED:
        if key == "n_samples_expected" and None in (old.get(key), new.get(key)):
            continue  # a length is compared only when both runs know it
        found += [f for f in differences(old.get(key), new.get(key), key) if f[0] not in _IGNORED]
    old_selection, new_selection = old.get("neuron_selection"), new.get("neuron_selection")
    by_values = False
    if old_selection != new_selection:
        kinds = {selection_kind(old_selection), selection_kind(new_selection)}
        if kinds <= set(INDEX_SELECTIONS):
            by_values = True
        else:
            found += differences(old_selection, new_selection, "neuron_selection")
    if found:
        given = set((new.get("analyzer") or {}).get("given") or [])
        raise mismatch_error(out_dir, _user_settings_first(found, given))
    return by_values


def _verified_prefix(out: Path, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The leading shards whose files pass the size and checksum checks."""
    kept = []
    for record in records:
        try:
            _integrity.verify_shard(out / record["file"], record["files"])
        except ShardIntegrityError as exc:
            warnings.warn(
                f"{exc}. Resuming recomputes shard {record['file']} and the "
                f"{len(records) - len(kept) - 1} shard(s) after it.",
                RuntimeWarning,
                stacklevel=6,
            )  # the caller of explain_dataset
            break
        kept.append(record)
    return kept


def _stored_units(out: Path, manifest: dict[str, Any]) -> np.ndarray:
    """The stored per-sample unit indices of the kept shards."""
    reader = DatasetExplanation(out, manifest)
    parts = [shard["selection"] for shard in reader.iter_shards(["selection"])]
    return np.concatenate(parts) if parts else np.zeros(0, np.int64)


def _mismatch(out: Path, line: str) -> ResumeMismatchError:
    return _mismatch_message(out, [line])


def _check_units_agree(out: Path, stored: np.ndarray, given: np.ndarray, first: int) -> None:
    differ = np.flatnonzero(stored != given)
    if differ.size:
        i = int(differ[0])
        raise _mismatch(
            out,
            f"neuron_selection: sample {first + i} was explained for unit "
            f"{int(stored[i])}, the selection now gives {int(given[i])}",
        )


def resume_from(
    out: Path,
    old: dict[str, Any],
    config: dict[str, Any],
    neuron_selection: Any,
    n_outputs: int | None,
) -> tuple[dict[str, Any], _input_checksum.SkippedInputs | None]:
    """The manifest state to continue from, and a check for the skipped samples.

    Raises:
        ResumeMismatchError: settings, data length or the selection's values differ
            (the data themselves are compared by the returned check, as they are read).
    """
    by_values = compare(old, config, out)
    known = config["n_samples_expected"]
    if old["complete"] and known is not None and known != old["completed"]:
        raise _mismatch(
            out,
            f"data length: the stored run is complete with "
            f"n={old['completed']} samples, the data now has {known}",
        )
    shards = _verified_prefix(out, old["shards"])
    state = {k: old.get(k) for k in ("fields", "sample_shape", "dtype")}
    state.update(
        shards=shards,
        completed=shards[-1]["stop"] if shards else 0,
        complete=bool(old["complete"]) and len(shards) == len(old["shards"]),
    )
    if not shards:
        return state, None
    legacy = [s["file"] for s in shards if _input_checksum.KEY not in s]
    if legacy:
        warnings.warn(
            f"{out}: {len(legacy)} finished shard(s) ({legacy[0]}, ...) were "
            "written by a tf_clrp that recorded no input checksums; their data "
            "cannot be compared with the data given now.",
            RuntimeWarning,
            stacklevel=5,
        )
    if not by_values:
        return state, _input_checksum.SkippedInputs(out, shards)
    stored = _stored_units(out, {**old, **state})
    if not (isinstance(neuron_selection, str) and neuron_selection == "labels"):
        given = unit_values(neuron_selection, len(stored))
        if given is None:
            raise _mismatch(
                out,
                f"neuron_selection: gives no unit for all of the {len(stored)} finished samples",
            )
        _check_units_agree(out, stored, given, 0)
        return state, _input_checksum.SkippedInputs(out, shards)

    def check_labels(labels: np.ndarray | None, index: np.ndarray) -> None:
        units = labels_to_indices(labels, n_outputs)
        _check_units_agree(out, stored[index], np.asarray(units), int(index[0]))

    return state, _input_checksum.SkippedInputs(out, shards, check_labels)
