"""Stdlib-only helpers shared by the speed benchmarks (imported from every venv).

Timing is best-of-N wall time after one warm-up call; memory is the peak resident set size
(``VmHWM``) of the process during one measurement, obtained by resetting the high-water mark
through ``/proc/self/clear_refs`` before it (Linux >= 4.0; otherwise the process-lifetime
``ru_maxrss`` is reported and marked as such).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

#: Threads every framework uses for its compute (TF intra-op, torch.set_num_threads).
THREADS = 2


def set_thread_env(threads: int | None = None) -> None:
    """OpenMP/MKL thread counts for libraries that read them at import (call before import).

    Args:
        threads: the count; None: ``$TF_CLRP_BENCH_THREADS``, else :data:`THREADS`.
    """
    if threads is None:
        threads = int(os.environ.get("TF_CLRP_BENCH_THREADS", THREADS))
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(threads)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def _status_kib(key: str) -> int | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def rss_mib() -> float:
    """Current resident set size in MiB."""
    kib = _status_kib("VmRSS")
    return (kib or 0) / 1024


def reset_peak_rss() -> bool:
    """Resets the peak-RSS high-water mark; True if the kernel allowed it."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def peak_rss_mib() -> float:
    """Peak RSS since the last ``reset_peak_rss`` (else since process start), in MiB."""
    kib = _status_kib("VmHWM")
    if kib is None:
        kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kib / 1024


@dataclass
class Timing:
    """Result of ``measure``: best and all wall times, CPU use and memory of one callable."""

    best_s: float
    times_s: list[float]
    warmup_s: float
    cpu_util: float  # process CPU seconds / wall seconds of the best run
    rss_before_mib: float
    peak_rss_mib: float
    peak_is_per_measurement: bool
    setup_s: float = 0.0  # creating the analyzer / attributor (before the warm-up call)


def measure(
    fn: Callable[[], Any], repeats: int, min_repeats: int = 2, budget_s: float = float("inf")
) -> Timing:
    """Best-of-N wall time of ``fn()`` after one warm-up call (which also compiles/traces).

    Args:
        fn: Runs the whole computation and blocks until its result is on the host.
        repeats: Timed runs at most.
        min_repeats: Timed runs at least, even past ``budget_s``.
        budget_s: Stop adding timed runs once their total exceeds this.

    Returns:
        The Timing.
    """
    per_measurement = reset_peak_rss()
    before = rss_mib()
    start = time.perf_counter()
    fn()
    warmup = time.perf_counter() - start
    times: list[float] = []
    cpu: list[float] = []
    while len(times) < repeats:
        c0, t0 = time.process_time(), time.perf_counter()
        fn()
        t1, c1 = time.perf_counter(), time.process_time()
        times.append(t1 - t0)
        cpu.append(c1 - c0)
        if len(times) >= min_repeats and sum(times) > budget_s:
            break
    best = min(range(len(times)), key=times.__getitem__)
    return Timing(
        times[best], times, warmup, cpu[best] / times[best], before, peak_rss_mib(), per_measurement
    )


@dataclass
class Record:
    """One (framework, model, method, batch, size) measurement, as stored in the JSON."""

    framework: str
    model: str
    method: str
    batch: int
    size: int
    seconds_per_image: float
    seconds_per_batch: float
    forward_seconds_per_image: float
    ratio_to_forward: float
    timing: dict[str, Any] = field(default_factory=dict)
    note: str = ""


def make_record(
    framework: str,
    model: str,
    method: str,
    batch: int,
    size: int,
    timing: Timing,
    forward: Timing,
    note: str = "",
) -> Record:
    """A Record from a method's Timing and the same configuration's forward Timing."""
    return Record(
        framework,
        model,
        method,
        batch,
        size,
        timing.best_s / batch,
        timing.best_s,
        forward.best_s / batch,
        timing.best_s / forward.best_s,
        asdict(timing),
        note,
    )


def machine_facts() -> dict[str, Any]:
    """CPU model, core count, kernel and Python of this machine."""
    model = "unknown"
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "cpu_model": model,
        "logical_cpus": os.cpu_count(),
        "kernel": platform.release(),
        "python": sys.version.split()[0],
        "threads": THREADS,
    }


def write_json(path: str | os.PathLike[str], payload: dict[str, Any]) -> None:
    """Writes ``payload`` as indented JSON, creating the parent folder."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(payload, indent=1, default=float) + "\n")


def save_records(
    path: str | None, records: list[Record], versions: dict[str, str], **extra: Any
) -> None:
    """Writes ``records_payload(records, versions, **extra)`` to ``path`` (nothing if None)."""
    if path:
        write_json(path, records_payload(records, versions, **extra))


def add_timing_args(parser: argparse.ArgumentParser, budget: bool = True) -> None:
    """The flags every speed worker shares: --repeats, --min-repeats and --budget (unless
    ``budget`` is False), --threads and --json."""
    parser.add_argument("--repeats", type=int, default=3, help="timed runs (best of N)")
    if budget:
        parser.add_argument(
            "--min-repeats", type=int, default=2, help="timed runs at least, even past --budget"
        )
        parser.add_argument(
            "--budget",
            type=float,
            default=float("inf"),
            help="seconds of timed runs per measurement before stopping early",
        )
    parser.add_argument(
        "--threads", type=int, default=THREADS, help="compute threads (TF intra-op / torch)"
    )
    parser.add_argument("--json", default=None, help="write the records to this JSON file")


def records_payload(
    records: list[Record], versions: dict[str, str], **extra: Any
) -> dict[str, Any]:
    """The JSON document a worker writes: machine, versions and records."""
    return {
        "machine": machine_facts(),
        "versions": versions,
        "records": [asdict(r) for r in records],
        **extra,
    }


def print_header() -> None:
    """The column names of ``print_records``."""
    print(
        f"{'framework':12s} {'model':18s} {'method':26s} {'b':>3s} {'px':>4s} "
        f"{'s/image':>9s} {'x fwd':>6s} {'peak MiB':>9s} {'cpu':>5s}",
        flush=True,
    )


def print_records(records: list[Record]) -> None:
    """One line per record: per-image seconds, ratio to the forward, peak RSS, CPU use."""
    for r in records:
        t = r.timing
        print(
            f"{r.framework:12s} {r.model:18s} {r.method:26s} {r.batch:3d} {r.size:4d} "
            f"{r.seconds_per_image:9.4f} {r.ratio_to_forward:6.2f} "
            f"{t.get('peak_rss_mib', 0):9.0f} {t.get('cpu_util', 0):5.2f}",
            flush=True,
        )
