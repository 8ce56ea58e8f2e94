"""Generate iNNvestigate 2.1.2 reference explanations for the parity tests.

Not a test module (no ``test_`` prefix): it needs the separate old-TF venv::

    python -m venv /work/venvs/inn
    /work/venvs/inn/bin/pip install tensorflow-cpu==2.14.1 innvestigate==2.1.2 'numpy<2'
    /work/venvs/inn/bin/python tests/references/generate_innvestigate.py

Writes ``innvestigate_refs.npz`` next to this file. Layout (all plain arrays, no pickles):

* ``meta``: JSON string, ``{"versions": ..., "models": ..., "entries": [...]}``;
  each entry has ``id``, ``name``, ``kwargs`` (JSON; lists mean tuples), ``model``,
  ``neuron_selection`` (int, list of ints, or ``"max_activation"``), ``status``
  (``"ok"`` / ``"error"``), ``error``, ``key`` (array key of the output),
  ``float64_rel_dev`` (max |f32 - f64| / max |f64| of iNNvestigate itself) and an
  optional ``note``. SmoothGrad entries add ``stochastic``, ``test_kwargs``,
  ``mc_samples``, ``se_key`` and ``se_samples``.
* ``x/<model>``: inputs; ``fwd/<model>``: model outputs computed on the tf.keras side;
  ``w/<model>/<layer>/<i>``: weights in Keras layout; ``out/<id>``: analyzer outputs;
  ``se/<id>``: per-element std of one ``se_samples``-draw SmoothGrad mean.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
OUT_PATH = HERE / "innvestigate_refs.npz"

#: (analyzer name, kwargs) explained on every model, in "index" and "max_activation" mode.
CONFIGS: list[tuple[str, dict[str, Any]]] = [
    ("gradient", {}),
    ("input_t_gradient", {}),
    ("deconvnet", {}),
    ("guided_backprop", {}),
    ("integrated_gradients", {"steps": 8}),
    ("lrp.z", {}),
    ("lrp.epsilon", {}),
    ("lrp.epsilon", {"epsilon": 0.1}),
    ("lrp.w_square", {}),
    ("lrp.flat", {}),
    ("lrp.alpha_beta", {"alpha": 3, "beta": 2}),
    ("lrp.alpha_2_beta_1", {}),
    ("lrp.alpha_2_beta_1_IB", {}),
    ("lrp.alpha_1_beta_0", {}),
    ("lrp.alpha_1_beta_0_IB", {}),
    ("lrp.z_plus", {}),
    ("lrp.z_plus_fast", {}),
    ("lrp.sequential_preset_a", {}),
    ("lrp.sequential_preset_b", {}),
    ("lrp.sequential_preset_a_flat", {}),
    ("lrp.sequential_preset_b_flat", {}),
    ("deep_taylor", {}),
    ("deep_taylor.bounded", {"low": -1, "high": 1}),
] + [
    (rule, {"input_layer_rule": ilr})
    for rule in ("lrp.z", "lrp.z_plus", "lrp.epsilon")
    for ilr in ("Flat", "WSquare", (-1, 1))
]

#: Extra entries with one neuron per sample (list selection), on the "cnn" model.
PER_SAMPLE: list[tuple[str, dict[str, Any]]] = [
    ("gradient", {}),
    ("lrp.epsilon", {"epsilon": 0.1}),
    ("lrp.sequential_preset_a", {}),
]
PER_SAMPLE_SELECTION = [5, 0, 2]

#: SmoothGrad is random: a Monte-Carlo mean over SG_RUNS x SG_N noise draws (dense only).
SG_MODEL = "dense"
SG_N = 256
SG_RUNS = 16
SG_TEST_N = 4096


def _load_ref_models() -> Any:
    sys.path.insert(0, str(HERE))
    import ref_models

    return ref_models


#: Wrapper analyzers (AugmentReduceBase) whose index mode rejects a scalar selection:
#: iNNvestigate 2.1.2 does np.repeat(idx, n) -> length n instead of batch * n.
AUGMENT_REDUCE = ("integrated_gradients", "smoothgrad")
SCALAR_WORKAROUND_NOTE = (
    "iNNvestigate 2.1.2 raises for a scalar neuron_selection on AugmentReduceBase "
    "analyzers; computed with the equivalent per-sample list [idx] * batch"
)


def _create(innvestigate: Any, name: str, kwargs: dict[str, Any], model: Any, sel: Any) -> Any:
    if sel == "max_activation":
        return innvestigate.create_analyzer(name, model, **kwargs)
    return innvestigate.create_analyzer(name, model, neuron_selection_mode="index", **kwargs)


def _selection_arg(name: str, sel: Any, batch: int) -> Any:
    """The neuron_selection actually passed to iNNvestigate's ``analyze``."""
    if isinstance(sel, int) and name in AUGMENT_REDUCE:
        return [sel] * batch
    return sel


def _analyze(
    innvestigate: Any, name: str, kwargs: dict[str, Any], model: Any, x: np.ndarray, sel: Any
) -> np.ndarray:
    """Run one iNNvestigate analyzer; ``sel`` is an int, a list, or "max_activation"."""
    analyzer = _create(innvestigate, name, kwargs, model, sel)
    if sel == "max_activation":
        return np.asarray(analyzer.analyze(x))
    return np.asarray(analyzer.analyze(x, neuron_selection=_selection_arg(name, sel, len(x))))


def _build(rm: Any, keras: Any, name: str, weights: dict[str, list[np.ndarray]] | None) -> Any:
    keras.backend.clear_session()
    model = rm.build(name, keras)
    rm.set_weights(model, weights if weights is not None else rm.make_weights(model))
    return model


def _run_all(rm: Any, keras: Any, innvestigate: Any, floatx: str) -> dict[str, Any]:
    """Compute every entry in the given float precision; returns arrays and metadata."""
    keras.backend.set_floatx(floatx)
    arrays: dict[str, np.ndarray] = {}
    entries: list[dict[str, Any]] = []
    weights_by_model: dict[str, dict[str, list[np.ndarray]]] = {}
    for model_name in rm.MODEL_NAMES:
        model = _build(rm, keras, model_name, None)
        weights_by_model[model_name] = rm.make_weights(model)
        x = rm.make_inputs(model_name).astype(floatx)
        arrays[f"x/{model_name}"] = x
        arrays[f"fwd/{model_name}"] = np.asarray(model.predict(x, verbose=0))
        for layer_name, ws in weights_by_model[model_name].items():
            for i, w in enumerate(ws):
                arrays[f"w/{model_name}/{layer_name}/{i}"] = w

        jobs: list[tuple[str, dict[str, Any], Any]] = []
        for name, kwargs in CONFIGS:
            jobs.append((name, kwargs, rm.NEURON_INDEX[model_name]))
            jobs.append((name, kwargs, "max_activation"))
        if model_name == "cnn":
            jobs += [(n, kw, PER_SAMPLE_SELECTION) for n, kw in PER_SAMPLE]

        t0 = time.time()
        for name, kwargs, sel in jobs:
            entry: dict[str, Any] = {
                "id": f"{len(entries):04d}",
                "name": name,
                "kwargs": kwargs,
                "model": model_name,
                "neuron_selection": sel,
            }
            if _selection_arg(name, sel, len(x)) is not sel:
                entry["note"] = SCALAR_WORKAROUND_NOTE
            # A fresh graph per analyzer: TF1 graphs only grow and get slow otherwise.
            model = _build(rm, keras, model_name, weights_by_model[model_name])
            try:
                out = _analyze(innvestigate, name, kwargs, model, x, sel)
                if out.shape != x.shape or not np.all(np.isfinite(out)):
                    raise ValueError(
                        f"bad output: shape {out.shape}, finite={np.isfinite(out).all()}"
                    )
                entry.update(status="ok", error="", key=f"out/{entry['id']}")
                arrays[entry["key"]] = out
            except Exception as err:  # recorded, never hidden
                msg = "".join(traceback.format_exception_only(type(err), err)).strip()
                entry.update(status="error", error=msg[:500], key="")
                print(f"  FAILED {name} {kwargs} on {model_name}: {msg[:200]}", flush=True)
            entries.append(entry)
        print(
            f"[{floatx}] {model_name}: {len(jobs)} entries in {time.time() - t0:.1f}s", flush=True
        )

    # SmoothGrad: Monte-Carlo estimate of the expectation + its standard error.
    x = rm.make_inputs(SG_MODEL).astype(floatx)
    for sel in (rm.NEURON_INDEX[SG_MODEL], "max_activation"):
        kwargs = {"augment_by_n": SG_N}
        entry = {
            "id": f"{len(entries):04d}",
            "name": "smoothgrad",
            "kwargs": kwargs,
            # What the parity test passes: more samples; noise std 1.0 is what
            # iNNvestigate 2.1.2 really uses (its noise_scale kwarg is ignored).
            "test_kwargs": {"augment_by_n": SG_TEST_N, "noise_scale": 1.0},
            "model": SG_MODEL,
            "neuron_selection": sel,
            "stochastic": True,
            "mc_samples": SG_N * SG_RUNS,
            "noise_std": 1.0,
        }
        if _selection_arg("smoothgrad", sel, len(x)) is not sel:
            entry["note"] = SCALAR_WORKAROUND_NOTE
        model = _build(rm, keras, SG_MODEL, weights_by_model[SG_MODEL])
        try:
            analyzer = _create(innvestigate, "smoothgrad", kwargs, model, sel)
            if sel == "max_activation":
                runs = [np.asarray(analyzer.analyze(x)) for _ in range(SG_RUNS)]
            else:
                arg = _selection_arg("smoothgrad", sel, len(x))
                runs = [
                    np.asarray(analyzer.analyze(x, neuron_selection=arg)) for _ in range(SG_RUNS)
                ]
            stack = np.stack(runs)
            entry.update(status="ok", error="", key=f"out/{entry['id']}")
            arrays[entry["key"]] = stack.mean(axis=0)
            # Standard error of the mean of ONE draw of SG_N samples (per element).
            arrays[f"se/{entry['id']}"] = stack.std(axis=0, ddof=1)
            entry["se_key"] = f"se/{entry['id']}"
            entry["se_samples"] = SG_N
        except Exception as err:
            msg = "".join(traceback.format_exception_only(type(err), err)).strip()
            entry.update(status="error", error=msg[:500], key="")
        entries.append(entry)
    return {"arrays": arrays, "entries": entries}


def main() -> None:
    """Generate references in float32, cross-check against float64, write the npz."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--skip-float64",
        action="store_true",
        help="skip the f32/f64 conditioning check (2x faster)",
    )
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    tf.compat.v1.disable_eager_execution()
    tf.config.threading.set_inter_op_parallelism_threads(1)
    tf.config.threading.set_intra_op_parallelism_threads(1)
    import innvestigate

    rm = _load_ref_models()
    keras = tf.keras

    res32 = _run_all(rm, keras, innvestigate, "float32")
    res64 = {"entries": [], "arrays": {}}
    if not args.skip_float64:
        res64 = _run_all(rm, keras, innvestigate, "float64")
        keras.backend.set_floatx("float32")

    arrays = res32["arrays"]
    entries = res32["entries"]
    for e32, e64 in zip(entries, res64["entries"], strict=False):
        assert e32["id"] == e64["id"] and e32["name"] == e64["name"]
        if e32.get("stochastic") or e32["status"] != "ok" or e64["status"] != "ok":
            continue
        r32 = arrays[e32["key"]].astype(np.float64)
        r64 = res64["arrays"][e64["key"]]
        scale = float(np.max(np.abs(r64)))
        e32["float64_rel_dev"] = float(np.max(np.abs(r32 - r64)) / scale) if scale > 0 else 0.0

    for key, value in list(arrays.items()):
        arrays[key] = np.asarray(value, dtype=np.float32)

    meta = {
        "versions": {
            # innvestigate.__version__ wrongly says 2.0.1 in the 2.1.2 wheel.
            "innvestigate": importlib.metadata.version("innvestigate"),
            "tensorflow": tf.__version__,
            "numpy": np.__version__,
        },
        "models": {
            m: {
                "neuron_index": rm.NEURON_INDEX[m],
                "input_shape": list(rm.INPUT_SHAPES[m]),
                "weighted_layers": rm.weighted_layer_names(rm.build(m, keras)),
            }
            for m in rm.MODEL_NAMES
        },
        "entries": entries,
    }
    np.savez_compressed(OUT_PATH, meta=np.array(json.dumps(meta)), **arrays)

    failed = [e for e in entries if e["status"] != "ok"]
    print(
        f"wrote {OUT_PATH} ({OUT_PATH.stat().st_size / 1e6:.2f} MB), "
        f"{len(entries)} entries, {len(failed)} failed"
    )
    for e in failed:
        print(
            f"  FAILED {e['name']} {json.dumps(e['kwargs'])} {e['model']} "
            f"sel={e['neuron_selection']}: {e['error'].splitlines()[-1]}"
        )
    fragile = [e for e in entries if e.get("float64_rel_dev", 0.0) > 1e-3]
    for e in fragile:
        print(
            f"  f32/f64 deviation {e['float64_rel_dev']:.2e}: {e['name']} "
            f"{json.dumps(e['kwargs'])} {e['model']} sel={e['neuron_selection']}"
        )


if __name__ == "__main__":
    main()
