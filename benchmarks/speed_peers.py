"""Side-by-side speed: tf_clrp vs iNNvestigate, Zennit and the CLRP authors' code.

Usage::

    python benchmarks/speed_peers.py --authors-repo PATH            # full run (~20 min)
    python benchmarks/speed_peers.py --authors-repo PATH --only zennit_vgg16,authors_vgg16
    python benchmarks/speed_peers.py --only innvestigate_resnet50 --segment-timeout 2400
    python benchmarks/speed_peers.py --authors-repo PATH --quick --out /tmp/speed  # smoke
    python benchmarks/speed_peers.py --report                        # tables from the JSON

Each segment is one subprocess in the peer's own environment: ``benchmarks/speed.py``
(tf_clrp, this Python), ``speed_innvestigate.py`` (``--inn-python``: TF 2.14 +
iNNvestigate 2.1.2), ``speed_torch.py`` (``--torch-python``: torch + Zennit; the authors'
code read from ``PATH``, their checkout or git directory, never copied here). Every worker
writes ``speed_<segment>.json``; this script writes ``speed_runs.json`` (commands, load, CPU
steal per segment) next to them and prints the Markdown tables of BENCHMARKS.md.

Load control (the machine is shared): before each segment it waits until the 1-minute load
average is below ``--max-load`` (polling every 30 s, at most ``--max-wait`` s). While a
segment runs it samples every second the load average, the runnable threads of its own
subprocess tree and of everything else; "foreign load" is the 1-minute load average minus
the benchmark's own runnable threads averaged with the kernel's 1-minute decay. A segment
whose foreign load rose above ``--rerun-load`` is run again (at most ``--max-reruns``
times; the attempt with the least foreign load is kept).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
DEFAULT_INN = "/work/venvs/inn/bin/python"
DEFAULT_TORCH = "/work/venvs/torch/bin/python"
SCALING = ("lrp.z_plus", "clrp")
SCALING_METHODS = ",".join(SCALING)
#: Run only when named in --only: iNNvestigate needs tens of minutes to build its ResNet50
#: analyzer (tf.keras graph-mode history creation), far beyond the full run's budget.
EXTRA_SEGMENTS = ("innvestigate_resnet50",)
SEGMENT_NAMES = (
    "tf_clrp_vgg16",
    "tf_clrp_resnet50",
    "tf_clrp_efficientnet_lite0",
    "tf_clrp_scaling_batch",
    "tf_clrp_scaling_size",
    "innvestigate_vgg16",
    "innvestigate_resnet50",
    "zennit_vgg16",
    "zennit_resnet50",
    "authors_vgg16",
)


# ----------------------------------------------------------------------------- load monitor
def _read(path: str) -> str:
    try:
        with open(path) as fh:
            return fh.read()
    except OSError:
        return ""


def loadavg() -> tuple[float, float, float]:
    """The 1, 5 and 15-minute load averages."""
    parts = _read("/proc/loadavg").split()
    return (float(parts[0]), float(parts[1]), float(parts[2])) if parts else (0.0, 0.0, 0.0)


def _cpu_ticks() -> tuple[int, int]:
    """(total, steal) jiffies of all CPUs from /proc/stat."""
    for line in _read("/proc/stat").splitlines():
        if line.startswith("cpu "):
            values = [int(v) for v in line.split()[1:]]
            return sum(values[:8]), values[7] if len(values) > 7 else 0
    return 0, 0


def _stat_fields(text: str) -> list[str]:
    """Fields after the ``(comm)`` of a /proc/.../stat line (state first)."""
    return text[text.rfind(")") + 2 :].split()


def _runnable_threads(pid: str) -> int:
    count = 0
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return 0
    for tid in tids:
        fields = _stat_fields(_read(f"/proc/{pid}/task/{tid}/stat"))
        if fields and fields[0] in ("R", "D"):
            count += 1
    return count


def runnable_split(root: int) -> tuple[int, int]:
    """(runnable threads in ``root``'s descendants, runnable threads elsewhere).

    ``root`` itself (this orchestrator, idle but for the sampler) counts as neither.
    """
    parents: dict[str, str] = {}
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            fields = _stat_fields(_read(f"/proc/{pid}/stat"))
            if len(fields) > 1:
                parents[pid] = fields[1]
    own: set[str] = set()
    frontier = {str(root)}
    while frontier:
        frontier = {p for p, pp in parents.items() if pp in frontier and p not in own}
        own |= frontier
    mine = other = 0
    for pid in parents:
        if pid == str(root):
            continue
        n = _runnable_threads(pid)
        if pid in own:
            mine += n
        else:
            other += n
    return mine, other


@dataclass
class LoadMonitor:
    """Samples load every ``period`` s in a thread for the whole session."""

    period: float = 1.0
    own_ema: float = 0.0
    samples: list[dict[str, float]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        """Starts sampling."""
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stops sampling."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _loop(self) -> None:
        decay = math.exp(-self.period / 60.0)
        root = os.getpid()
        while not self._stop.is_set():
            mine, other = runnable_split(root)
            self.own_ema = self.own_ema * decay + mine * (1.0 - decay)
            load1 = loadavg()[0]
            self.samples.append(
                {
                    "t": time.time(),
                    "load1": load1,
                    "own": mine,
                    "other": other,
                    "foreign": load1 - self.own_ema,
                }
            )
            self._stop.wait(self.period)

    def window(self, start: float, end: float) -> list[dict[str, float]]:
        """The samples taken between two ``time.time()`` values."""
        return [s for s in self.samples if start <= s["t"] <= end]


def wait_for_quiet(max_load: float, max_wait: float, poll: float = 30.0) -> dict[str, Any]:
    """Waits until the 1-minute load average is below ``max_load``."""
    start = time.time()
    while True:
        load = loadavg()
        if load[0] < max_load:
            return {"waited_s": round(time.time() - start, 1), "timed_out": False}
        if time.time() - start >= max_wait:
            return {"waited_s": round(time.time() - start, 1), "timed_out": True}
        print(f"  load {load[0]:.2f} >= {max_load}: waiting {poll:.0f} s", flush=True)
        time.sleep(poll)


# ----------------------------------------------------------------------------- segments
def segments(args: argparse.Namespace) -> dict[str, list[str]]:
    """Segment name -> command (its JSON path is added by ``run_segment``)."""
    py, inn, tch = sys.executable, args.inn_python, args.torch_python
    speed = str(HERE / "speed.py")
    if args.quick:
        common = ["--repeats", "1", "--min-repeats", "1"]
        scaling = common
        big, small, vgg_size = "2", "1", "32"
        sizes, resnet_size = "64", "64"
    else:
        common = [
            "--repeats",
            str(args.repeats),
            "--min-repeats",
            "2",
            "--budget",
            str(args.budget),
        ]
        scaling = ["--repeats", "2", "--min-repeats", "2"]
        # batch 8 at 224² comes from tf_clrp_vgg16 (same script, same settings)
        big, small, vgg_size = "8", "1,4,16", "224"
        sizes, resnet_size = "112,320", "224"
    commands = {
        "tf_clrp_vgg16": [
            py,
            speed,
            "--model",
            "vgg16",
            "--batch",
            big,
            "--size",
            vgg_size,
            *common,
        ],
        "tf_clrp_resnet50": [
            py,
            speed,
            "--model",
            "resnet50",
            "--batch",
            big,
            "--size",
            resnet_size,
            *common,
        ],
        "tf_clrp_efficientnet_lite0": [
            py,
            speed,
            "--model",
            "efficientnet_lite0",
            "--batch",
            big,
            *common,
        ],
        "tf_clrp_scaling_batch": [
            py,
            speed,
            "--model",
            "vgg16",
            "--batch",
            small,
            "--size",
            vgg_size,
            "--methods",
            SCALING_METHODS,
            *scaling,
        ],
        "tf_clrp_scaling_size": [
            py,
            speed,
            "--model",
            "vgg16",
            "--batch",
            big,
            "--size",
            sizes,
            "--methods",
            SCALING_METHODS,
            *scaling,
        ],
        "innvestigate_vgg16": [
            inn,
            str(HERE / "speed_innvestigate.py"),
            "--model",
            "vgg16",
            "--batch",
            big,
            "--size",
            vgg_size,
            *common,
        ],
        "innvestigate_resnet50": [
            inn,
            str(HERE / "speed_innvestigate.py"),
            "--model",
            "resnet50",
            "--batch",
            big,
            "--size",
            resnet_size,
            *common,
        ],
        "zennit_vgg16": [
            tch,
            str(HERE / "speed_torch.py"),
            "zennit",
            "--model",
            "vgg16",
            "--batch",
            big,
            "--size",
            vgg_size,
            *common,
        ],
        "zennit_resnet50": [
            tch,
            str(HERE / "speed_torch.py"),
            "zennit",
            "--model",
            "resnet50",
            "--batch",
            big,
            "--size",
            resnet_size,
            *common,
        ],
        "authors_vgg16": [
            tch,
            str(HERE / "speed_torch.py"),
            "authors",
            str(args.authors_repo),
            "--batch",
            "1",
            "--size",
            "224",
            *common,
        ],
    }
    assert tuple(commands) == SEGMENT_NAMES
    return commands


def _summary(samples: list[dict[str, float]]) -> dict[str, float]:
    if not samples:
        return {}
    return {
        "load1_max": max(s["load1"] for s in samples),
        "foreign_load_max": round(max(s["foreign"] for s in samples), 2),
        "foreign_runnable_mean": round(sum(s["other"] for s in samples) / len(samples), 2),
        "own_runnable_mean": round(sum(s["own"] for s in samples) / len(samples), 2),
    }


def run_segment(
    name: str, command: list[str], out_dir: Path, monitor: LoadMonitor, args: argparse.Namespace
) -> dict[str, Any]:
    """Runs one segment (with the load gate and reruns); returns its run record."""
    attempts = []
    final = out_dir / f"speed_{name}.json"
    for attempt in range(args.max_reruns + 1):
        gate = (
            {"waited_s": 0.0, "timed_out": False}
            if args.quick
            else wait_for_quiet(args.max_load, args.max_wait)
        )
        path = out_dir / f"speed_{name}.attempt{attempt}.json"
        cmd = [*command, "--json", str(path)]
        print(f"[{name}] attempt {attempt}: {' '.join(cmd)}", flush=True)
        before, ticks0 = loadavg(), _cpu_ticks()
        start = time.time()
        try:
            returncode: int | str = subprocess.run(
                cmd, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}, timeout=args.segment_timeout
            ).returncode
        except subprocess.TimeoutExpired:
            returncode = f"timeout after {args.segment_timeout:.0f} s"
        end = time.time()
        after, ticks1 = loadavg(), _cpu_ticks()
        total = max(ticks1[0] - ticks0[0], 1)
        record = {
            "segment": name,
            "attempt": attempt,
            "command": cmd,
            "returncode": returncode,
            "started": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(start)),
            "duration_s": round(end - start, 1),
            "gate": gate,
            "loadavg_before": before,
            "loadavg_after": after,
            "steal_fraction": round((ticks1[1] - ticks0[1]) / total, 4),
            **_summary(monitor.window(start, end)),
        }
        print(
            f"[{name}] {record['duration_s']} s, load {before[0]:.2f} -> {after[0]:.2f}, "
            f"foreign max {record.get('foreign_load_max')}, rc {returncode}",
            flush=True,
        )
        attempts.append((record, path))
        if returncode != 0 or args.quick:
            break
        if record.get("foreign_load_max", 0.0) <= args.rerun_load:
            break
    ok = [(r, p) for r, p in attempts if p.exists()]  # a timed-out run may have written a part
    if ok:
        best, path = min(ok, key=lambda rp: rp[0].get("foreign_load_max", 0.0))
        shutil.move(str(path), final)
        best["kept"] = True
    for _, p in attempts:
        if p.exists():
            p.unlink()
    return {"segment": name, "attempts": [r for r, _ in attempts]}


# ----------------------------------------------------------------------------- report
def load_records(out_dir: Path) -> list[dict[str, Any]]:
    """All records of ``speed_<segment>.json`` files in ``out_dir``, tagged by segment."""
    records = []
    for path in sorted(out_dir.glob("speed_*.json")):
        if path.stem[len("speed_") :] not in SEGMENT_NAMES:
            continue  # speed_runs.json, speed_profile_*.json
        data = json.loads(path.read_text())
        for r in data.get("records", []):
            records.append(
                {**r, "segment": path.stem[len("speed_") :], "versions": data.get("versions", {})}
            )
    return records


def _find(
    records: list[dict[str, Any]],
    segment: str,
    method: str,
    batch: int | None = None,
    size: int | None = None,
) -> dict[str, Any] | None:
    for r in records:
        if (
            r["segment"] == segment
            and r["method"] == method
            and (batch is None or r["batch"] == batch)
            and (size is None or r["size"] == size)
        ):
            return r
    return None


def _pick(rows: list[dict[str, Any]], key: str, value: int, method: str) -> dict[str, Any] | None:
    return next((r for r in rows if r["method"] == method and r[key] == value), None)


def _fmt(r: dict[str, Any] | None, key: str, digits: int = 3) -> str:
    if r is None:
        return "–"
    if key == "peak":
        return f"{r['timing']['peak_rss_mib']:.0f}"
    return f"{r[key]:.{digits}f}"


def report(out_dir: Path) -> str:
    """The Markdown tables (and the targets) from the JSON files in ``out_dir``."""
    records = load_records(out_dir)
    lines: list[str] = []
    add = lines.append
    for model in ("vgg16", "resnet50", "efficientnet_lite0"):
        order = ("tf_clrp", "innvestigate", "zennit", "authors")
        rows = sorted(
            (r for r in records if r["model"] == model and r["segment"].endswith(model)),
            key=lambda r: order.index(r["framework"]),
        )
        if not rows:
            continue
        add(f"\n### {model}, {rows[0]['size']}², CPU\n")
        add(
            "| framework | method | batch | s / image | × own forward | first call (s) "
            "| peak RSS (MiB) | CPU use |"
        )
        add("|---|---|---:|---:|---:|---:|---:|---:|")
        for r in rows:
            t = r["timing"]
            first = t["warmup_s"] + t.get("setup_s", 0.0)
            add(
                f"| {r['framework']} | {r['method']} | {r['batch']} | "
                f"{r['seconds_per_image']:.3f} | {r['ratio_to_forward']:.2f} | {first:.1f} | "
                f"{t['peak_rss_mib']:.0f} | {t['cpu_util']:.2f} |"
            )
    for segment, key, fixed in (
        ("tf_clrp_scaling_batch", "batch", "size"),
        ("tf_clrp_scaling_size", "size", "batch"),
    ):
        rows = [r for r in records if r["segment"] == segment]
        if not rows:
            continue
        main = [
            r
            for r in records
            if r["segment"] == "tf_clrp_vgg16"
            and r[fixed] == rows[0][fixed]
            and r["method"] in ("forward", *SCALING)
        ]
        rows += main  # the batch-8, 224² point of the main VGG16 run
        add(
            f"\n### tf_clrp scaling with {key} (VGG16, {fixed} {rows[0][fixed]}; the "
            "batch-8, 224² row is from the main VGG16 run)\n"
        )
        add(
            f"| {key} | forward s/image | lrp.z_plus s/image | × fwd | clrp s/image | × fwd "
            "| clrp peak RSS (MiB) |"
        )
        add("|---:|---:|---:|---:|---:|---:|---:|")
        for value in sorted({r[key] for r in rows}):
            fwd, zp, cl = (_pick(rows, key, value, m) for m in ("forward", "lrp.z_plus", "clrp"))
            add(
                f"| {value} | {_fmt(fwd, 'seconds_per_image')} | "
                f"{_fmt(zp, 'seconds_per_image')} | {_fmt(zp, 'ratio_to_forward', 2)} | "
                f"{_fmt(cl, 'seconds_per_image')} | {_fmt(cl, 'ratio_to_forward', 2)} | "
                f"{_fmt(cl, 'peak')} |"
            )
    runs_path = out_dir / "speed_runs.json"
    if runs_path.exists():
        add("\n### Load during the runs\n")
        add(
            "| segment | attempt | started | duration (s) | waited (s) | load before → after "
            "| foreign load max | CPU steal | kept |"
        )
        add("|---|---:|---|---:|---:|---|---:|---:|---|")
        for name, seg in json.loads(runs_path.read_text())["segments"].items():
            for a in seg["attempts"]:
                rc = "" if a["returncode"] == 0 else f" ({a['returncode']})"
                add(
                    f"| {name} | {a['attempt']} | {a['started']} | {a['duration_s']:.0f} | "
                    f"{a['gate']['waited_s']:.0f} | {a['loadavg_before'][0]:.2f} → "
                    f"{a['loadavg_after'][0]:.2f} | {a.get('foreign_load_max', 0):.2f} | "
                    f"{a['steal_fraction']:.2%} | {'yes' if a.get('kept') else 'no'}{rc} |"
                )
    profile_path = out_dir / "speed_profile_vgg16.json"
    if profile_path.exists():
        profile = json.loads(profile_path.read_text())
        add("\n### Profile: tf_clrp variants (VGG16)\n")
        add("| variant | batch | s / image | × Keras forward | CPU use |")
        add("|---|---:|---:|---:|---:|")
        for r in profile["records"]:
            add(
                f"| {r['method']}{' (x conv fwd)' if r['model'] == '-' else ''} | "
                f"{r['batch']} | {r['seconds_per_image']:.4f} | {r['ratio_to_forward']:.2f} | "
                f"{r['timing']['cpu_util']:.2f} |"
            )
        for method, rows in profile.get("op_breakdown", {}).items():
            add(f"\nOp time of one `{method}` call (batch {profile['records'][0]['batch']}):\n")
            add("| op type | ms | share |")
            add("|---|---:|---:|")
            for row in rows:
                add(f"| {row['op']} | {row['ms']:.0f} | {row['share']:.1%} |")
    add("\n### Targets (VGG16, 224², batch 8, CPU)\n")
    add("| target | measured | result |")
    add("|---|---:|---|")
    for text, value, ok in targets(records):
        add(f"| {text} | {value} | {'PASS' if ok else 'FAIL' if ok is not None else 'n/a'} |")
    return "\n".join(lines) + "\n"


def targets(records: list[dict[str, Any]]) -> list[tuple[str, str, bool | None]]:
    """(description, measured value, pass?) for each speed target."""
    seg = "tf_clrp_vgg16"
    zp, cl = _find(records, seg, "lrp.z_plus"), _find(records, seg, "clrp")
    pa, ep = _find(records, seg, "lrp.sequential_preset_a"), _find(records, seg, "lrp.epsilon_plus")
    inn = _find(records, "innvestigate_vgg16", "lrp.sequential_preset_a")
    zen = _find(records, "zennit_vgg16", "lrp.epsilon_plus")
    aut = _find(records, "authors_vgg16", "clrp")
    cl1 = _find(records, "tf_clrp_scaling_batch", "clrp", batch=1, size=224)
    out: list[tuple[str, str, bool | None]] = []

    def ratio(
        text: str,
        num: dict[str, Any] | None,
        den: dict[str, Any] | None,
        need: float,
        at_most: bool = False,
    ) -> None:
        if num is None or den is None:
            out.append((text, "–", None))
            return
        value = num["seconds_per_image"] / den["seconds_per_image"]
        out.append((text, f"{value:.2f}×", value <= need if at_most else value >= need))

    zp_bf, cl_mx = _find(records, seg, "lrp.z_plus@bfloat16"), _find(records, seg, "clrp@mixed")
    cl_bf = _find(records, seg, "clrp@bfloat16")
    for text, r, need in (
        ("lrp.z_plus ≤ 3.0× Keras forward", zp, 3.0),
        ("(same, precision='bfloat16')", zp_bf, 3.0),
        ("clrp (both maps) ≤ 4.0× Keras forward", cl, 4.0),
        ("(same, precision='mixed')", cl_mx, 4.0),
        ("(same, precision='bfloat16')", cl_bf, 4.0),
    ):
        out.append(
            (text, "–", None)
            if r is None
            else (text, f"{r['ratio_to_forward']:.2f}×", r["ratio_to_forward"] <= need)
        )
    ratio("lrp.sequential_preset_a ≥ 1.5× faster than iNNvestigate's", inn, pa, 1.5)
    ratio("lrp.epsilon_plus ≥ 2× faster than Zennit's EpsilonPlus", zen, ep, 2.0)
    ratio("clrp ≥ 10× faster per image than the authors' code (tf_clrp batch 8)", aut, cl, 10.0)
    ratio("(same, tf_clrp at batch 1 as well)", aut, cl1, 10.0)
    ratio("(same, precision='mixed', batch 8)", aut, cl_mx, 10.0)
    ratio("(same, precision='bfloat16', batch 8)", aut, cl_bf, 10.0)
    return out


# ----------------------------------------------------------------------------- main
def main() -> None:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--authors-repo", default=None, help="checkout or git dir of JindongGu/Contrastive-LRP"
    )
    parser.add_argument("--inn-python", default=DEFAULT_INN)
    parser.add_argument("--torch-python", default=DEFAULT_TORCH)
    parser.add_argument("--only", default="", help="comma-separated segment names")
    parser.add_argument("--out", default=str(RESULTS), help="folder of the JSON results")
    parser.add_argument("--repeats", type=int, default=3, help="best of N timed runs")
    parser.add_argument(
        "--budget",
        type=float,
        default=15.0,
        help="stop adding timed runs (after 2) once they took this many s",
    )
    parser.add_argument("--max-load", type=float, default=1.3)
    parser.add_argument("--max-wait", type=float, default=2400.0)
    parser.add_argument("--rerun-load", type=float, default=1.5)
    parser.add_argument("--max-reruns", type=int, default=2)
    parser.add_argument(
        "--segment-timeout",
        type=float,
        default=1800.0,
        help="kill a segment's process after this many seconds",
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes, no load gate")
    parser.add_argument("--report", action="store_true", help="only print the tables")
    args = parser.parse_args()
    out_dir = Path(args.out)
    if args.report:
        print(report(out_dir))
        return
    all_segments = segments(args)
    chosen = [s for s in args.only.split(",") if s] or [
        s for s in all_segments if s not in EXTRA_SEGMENTS
    ]
    unknown = sorted(set(chosen) - set(all_segments))
    if unknown:
        parser.error(f"unknown segment(s) {unknown}; choose from {sorted(all_segments)}")
    if args.authors_repo is None and "authors_vgg16" in chosen:
        parser.error("--authors-repo PATH is needed for the authors_vgg16 segment")
    out_dir.mkdir(parents=True, exist_ok=True)
    runs_path = out_dir / "speed_runs.json"
    runs = json.loads(runs_path.read_text()) if runs_path.exists() else {"segments": {}}
    monitor = LoadMonitor()
    monitor.start()
    try:
        for name in chosen:
            runs["segments"][name] = run_segment(name, all_segments[name], out_dir, monitor, args)
            runs_path.write_text(json.dumps(runs, indent=1) + "\n")
    finally:
        monitor.stop()
    print(report(out_dir))


if __name__ == "__main__":
    main()
