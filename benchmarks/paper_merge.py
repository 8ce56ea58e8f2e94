"""Merge runs of ``paper_pointing_game.py`` that explained the same scenes with different
``--methods`` into one set of tables, as if one invocation had run every method.

A method's numbers do not depend on which other methods ran with it: the scenes, rows,
bootstrap draws (seeded per call) and the random-order AOPC draw are the same in every run
with the same ``--mosaics/--pairs/--seed/--aopc-mosaics``. So a long run can be split into
method groups that run in parallel and be merged afterwards; the merge refuses runs whose
scenes, photo classes or baselines differ. Each run's command and runtime are kept.

Usage:
    python benchmarks/paper_merge.py RUN_DIR [RUN_DIR ...] --maps NPZ [NPZ ...] \\
        --out benchmarks/results --figures docs/figures
    python benchmarks/paper_merge.py --compare RUN_A RUN_B    # per-row agreement of 2 runs

``RUN_DIR`` holds a run's ``paper_pointing_game.{json,md}``, ``*_rows.csv`` and
``*_aopc.csv`` (its ``--out``); ``--maps`` names each run's saved maps
(``paper_pointing_game_maps.npz`` in its ``--cache``), in the same order, for the figures.
Writes the merged json / md / csv files to ``--out`` and the example and curve figures.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from typing import Any

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import paper_common as pc  # noqa: E402
import paper_pointing_game as pg  # noqa: E402

BASELINES = ("(center)", "(random point)")
#: Config fields that must agree between merged runs (the rest: methods, rise masks, ...).
SAME_SCENES = (
    "photos",
    "mosaics",
    "pairs",
    "voc",
    "seed",
    "tolerance",
    "aopc_mosaics",
    "aopc_steps",
    "patch_size",
)
PREFIX = "paper_pointing_game"


def method_order() -> list[str]:
    """Every table name in table order: METHOD_TABLE, then the ablations."""
    return [row[0] for row in pc.METHOD_TABLE + pc.ABLATION_TABLE]


def _ordered(table: dict[str, Any], order: list[str]) -> dict[str, Any]:
    """``table`` with its methods in ``order`` (unknown names after them, baselines last)."""
    rank = {n: i for i, n in enumerate(order)}
    names = sorted(
        (n for n in table if n not in BASELINES), key=lambda n: (rank.get(n, len(rank)), n)
    )
    return {n: table[n] for n in [*names, *(b for b in BASELINES if b in table)]}


def _union(docs: list[dict[str, Any]], key: str, order: list[str]) -> dict[str, Any]:
    """Per scene kind, the union of the runs' method entries (baselines must agree)."""
    merged: dict[str, dict[str, Any]] = {}
    for doc in docs:
        for kind, table in doc[key].items():
            target = merged.setdefault(kind, {})
            for name, value in table.items():
                if name in target and name not in BASELINES:
                    raise ValueError(f"{name} is in two runs ({key}, {kind})")
                if name in target and json.dumps(target[name]) != json.dumps(value):
                    raise ValueError(f"the baseline {name} differs between runs ({kind})")
                target[name] = value
    return {kind: _ordered(table, order) for kind, table in merged.items()}


def _merge_aopc(parts: list[dict[str, Any] | None], order: list[str]) -> dict[str, Any] | None:
    """Union of the runs' AOPC results (the random-order row must agree)."""
    parts = [p for p in parts if p is not None]
    if not parts:
        return None
    if len({p["n"] for p in parts}) != 1:
        raise ValueError("the AOPC runs explained different rows")
    out: dict[str, Any] = {"n": parts[0]["n"], "aopc": {}, "ci": {}, "curves": {}}
    for p in parts:
        for key in ("aopc", "ci", "curves"):
            out[key].update(p[key])
        rand = p["aopc"]["(random order)"]["random"]
        if not np.isclose(rand, parts[0]["aopc"]["(random order)"]["random"]):
            raise ValueError("the random-order AOPC differs between runs")
    names = [n for n in _ordered(out["aopc"], order) if n != "(random order)"]
    names.append("(random order)")
    return {key: ({n: out[key][n] for n in names} if key != "n" else out[key]) for key in out}


def load_run(run_dir: str) -> tuple[dict[str, Any], list[dict[str, str]], list[dict[str, str]]]:
    """A run's JSON document, rows CSV and AOPC CSV (as lists of dicts)."""
    with open(os.path.join(run_dir, f"{PREFIX}.json")) as fh:
        doc = json.load(fh)
    with open(os.path.join(run_dir, f"{PREFIX}_rows.csv")) as fh:
        rows = list(csv.DictReader(fh))
    aopc_path = os.path.join(run_dir, f"{PREFIX}_aopc.csv")
    aopc: list[dict[str, str]] = []
    if os.path.exists(aopc_path):
        with open(aopc_path) as fh:
            aopc = list(csv.DictReader(fh))
    doc.setdefault("runs", [{"command": doc["command"], "seconds": doc["seconds"]}])
    methods = list(dict.fromkeys(r["method"] for r in rows))
    doc.setdefault("n_rows", len(rows) // max(len(methods), 1))
    return doc, rows, aopc


def merge_docs(docs: list[dict[str, Any]]) -> dict[str, Any]:
    """One summary document from several runs on the same scenes."""
    first = docs[0]
    for doc in docs[1:]:
        for key in SAME_SCENES:
            if doc["config"][key] != first["config"][key]:
                raise ValueError(
                    f"runs differ in {key}: {doc['config'][key]} vs {first['config'][key]}"
                )
        for key in ("scenes", "photo_classes", "n_rows"):
            if doc[key] != first[key]:
                raise ValueError(f"runs differ in {key}")
    order = method_order()
    config = dict(first["config"])
    rise_runs = [d for d in docs if "rise" in next(iter(d["pointing"].values()))]
    if rise_runs:
        config["rise_masks"] = rise_runs[0]["config"]["rise_masks"]
        config["rise_grid"] = rise_runs[0]["config"].get("rise_grid", 7)
    config["methods"] = None
    seconds_per_method: dict[str, float] = {}
    for doc in docs:
        seconds_per_method.update(doc["seconds_per_method"])
    return {
        "command": "; ".join(r["command"] for d in docs for r in d["runs"]),
        "runs": [r for d in docs for r in d["runs"]],
        "config": config,
        "seconds": {"total": sum(r["seconds"]["total"] for d in docs for r in d["runs"])},
        "seconds_per_method": _ordered(seconds_per_method, order),
        "n_rows": first["n_rows"],
        "photo_classes": first["photo_classes"],
        "scenes": first["scenes"],
        "pointing": _union(docs, "pointing", order),
        "discriminativeness": _union(docs, "discriminativeness", order),
        "clrp_parts": next((d["clrp_parts"] for d in docs if d["clrp_parts"]), {}),
        "aopc_photos": _merge_aopc([d["aopc_photos"] for d in docs], order),
        "aopc_mosaics": _merge_aopc([d["aopc_mosaics"] for d in docs], order),
    }


def merge_rows(row_sets: list[list[dict[str, str]]], n_rows: int) -> list[dict[str, str]]:
    """Per-row CSV lines of all runs, row by row, methods in table order."""
    rank = {n: i for i, n in enumerate(method_order())}
    per_row: list[list[dict[str, str]]] = [[] for _ in range(n_rows)]
    for rows in row_sets:
        k = len(rows) // n_rows
        for i in range(n_rows):
            per_row[i].extend(rows[i * k : (i + 1) * k])
    return [
        r
        for group in per_row
        for r in sorted(group, key=lambda r: rank.get(r["method"], len(rank)))
    ]


def _write_dicts(path: str, lines: list[dict[str, str]]) -> None:
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(lines[0]))
        w.writeheader()
        w.writerows(lines)


def figures(doc: dict[str, Any], maps_files: list[str], fig_dir: str) -> dict[str, str]:
    """Example figures of the first scene of each kind and the AOPC curves, from the runs'
    saved maps (scene images recovered from the saved inputs: x · 128 + 127)."""
    from tf_clrp.zoo import imagenet_class_names

    short = imagenet_class_names(short=True)
    os.makedirs(fig_dir, exist_ok=True)
    paths: dict[str, str] = {}
    scenes = doc["scenes"]
    with np.load(maps_files[0]) as first:
        scene_of_row, classes, x = first["scene"], first["classes"], first["x"]
    regions: list[list[pc.Box]] = [
        [tuple(b) for b in scenes[s]["classes"][str(int(c))]]
        if s < len(scenes)
        else [(0, 0, 224, 224)]
        for s, c in zip(scene_of_row, classes)
    ]
    shown_names = [n for n in method_order() if "(no z^B)" not in n and "per-image" not in n]
    for kind, fname in (
        ("mosaic", "pointing_mosaic_examples.png"),
        ("pair", "pointing_pair_examples.png"),
        ("voc", "pointing_voc_examples.png"),
    ):
        ids = [j for j, s in enumerate(scenes) if s["kind"] == kind]
        if not ids:
            continue
        idx = np.flatnonzero(scene_of_row == ids[0])
        maps: dict[str, np.ndarray] = {}
        for path in maps_files:
            with np.load(path) as data:
                for key in data.files:
                    if key.startswith("map/") and key[4:] in shown_names:
                        maps[key[4:]] = data[key][idx]
        maps = {n: maps[n] for n in shown_names if n in maps}
        local = pc.Rows(
            x[idx], classes[idx], classes[idx], scene_of_row[idx], [regions[i] for i in idx]
        )
        image = np.clip(np.rint(x[idx[0]].astype(np.float32) * 128 + 127), 0, 255)
        labels = [f"{short[c]} ({c})" for c in classes[idx]]
        paths[kind + "_figure"] = os.path.join(fig_dir, fname)
        pc.example_figure(
            [image.astype(np.uint8)] * len(idx),
            maps,
            range(len(idx)),
            local,
            labels,
            paths[kind + "_figure"],
            doc["config"]["tolerance"],
        )
    if doc["aopc_photos"] is not None:
        a, m = doc["aopc_photos"], doc["aopc_mosaics"]
        panels = [
            ("single photos, MoRF (top-1 logit)", a["curves"], "morf"),
            ("single photos, LeRF", a["curves"], "lerf"),
        ]
        if m is not None:
            panels.append(("mosaics, MoRF per present class", m["curves"], "morf"))
        paths["curves"] = os.path.join(fig_dir, "perturbation_curves_photos.png")
        pc.curves_figure(panels, paths["curves"])
    return paths


def agreement(run_a: str, run_b: str) -> str:
    """How far two runs of the same scenes agree per method (e.g. RISE with 250 vs 1000
    masks): share of rows whose arg-max falls in the same box-hit state (τ = 0), share of
    rows with the same τ = 15 hit, median arg-max distance (px), and each run's τ = 0
    Pointing Game."""
    (doc_a, rows_a, _), (doc_b, rows_b, _) = load_run(run_a), load_run(run_b)
    if doc_a["scenes"] != doc_b["scenes"]:
        raise ValueError("the runs explained different scenes")
    boxes = {s["name"]: s["classes"] for s in doc_a["scenes"]}
    lines = [
        "| method | same hit τ=0 | same hit τ=15 | median arg-max distance (px) | "
        f"τ=0 {doc_a['config'].get('rise_masks')} masks | "
        f"τ=0 {doc_b['config'].get('rise_masks')} masks |",
        "|---|---|---|---|---|---|",
    ]
    for method in dict.fromkeys(r["method"] for r in rows_a):
        a = [r for r in rows_a if r["method"] == method and r["kind"] != "photo"]
        b = [r for r in rows_b if r["method"] == method and r["kind"] != "photo"]

        def inside(r: dict[str, str]) -> float:
            y, x = int(r["max_y"]), int(r["max_x"])
            return float(
                any(
                    y0 <= y < y1 and x0 <= x < x1
                    for y0, x0, y1, x1 in boxes[r["scene"]][r["class"]]
                )
            )

        in_a, in_b = np.array([inside(r) for r in a]), np.array([inside(r) for r in b])
        hit_a, hit_b = (np.array([float(r["hit"]) for r in rows]) for rows in (a, b))
        dist = [
            np.hypot(int(p["max_y"]) - int(q["max_y"]), int(p["max_x"]) - int(q["max_x"]))
            for p, q in zip(a, b)
        ]
        cls = np.array([int(r["class"]) for r in a])
        lines.append(
            f"| {method} (n={len(a)} rows) | {np.mean(in_a == in_b):.2f} | "
            f"{np.mean(hit_a == hit_b):.2f} | {np.median(dist):.0f} | "
            f"{pc.class_mean(in_a, cls):.2f} | {pc.class_mean(in_b, cls):.2f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Merge the runs and write the merged outputs (or compare two runs)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", help="the runs' --out folders")
    p.add_argument("--maps", nargs="*", default=[], help="the runs' saved maps (.npz)")
    p.add_argument("--out", default=os.path.join(pg.ROOT, "benchmarks", "results"))
    p.add_argument("--figures", default=os.path.join(pg.ROOT, "docs", "figures"))
    p.add_argument(
        "--compare",
        action="store_true",
        help="print how far two runs of the same scenes agree; write nothing",
    )
    args = p.parse_args(argv)
    if args.compare:
        print(agreement(*args.runs))
        return
    loaded = [load_run(d) for d in args.runs]
    doc = merge_docs([d for d, _, _ in loaded])
    doc["merge_command"] = pc.command_line(__file__, argv)
    os.makedirs(args.out, exist_ok=True)
    pc.write_json(os.path.join(args.out, f"{PREFIX}.json"), doc)
    with open(os.path.join(args.out, f"{PREFIX}.md"), "w") as fh:
        fh.write(pg.markdown(doc))
    _write_dicts(
        os.path.join(args.out, f"{PREFIX}_rows.csv"),
        merge_rows([rows for _, rows, _ in loaded], doc["n_rows"]),
    )
    rank = {n: i for i, n in enumerate(method_order() + ["(random order)"])}
    aopc = [r for _, _, lines in loaded for r in lines]
    seen: set[tuple[str, str, str]] = set()
    unique = []
    for r in sorted(aopc, key=lambda r: (r["set"] != "photos", rank.get(r["method"], 99))):
        key = (r["set"], r["method"], r["order"])
        if key not in seen:
            seen.add(key)
            unique.append(r)
    if unique:
        _write_dicts(os.path.join(args.out, f"{PREFIX}_aopc.csv"), unique)
    if args.maps:
        if len(args.maps) != len(args.runs):
            raise ValueError("give one --maps file per run, in the same order")
        figures(doc, args.maps, args.figures)
    print(pg.markdown(doc))


if __name__ == "__main__":
    main()
