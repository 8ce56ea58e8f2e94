"""iNNvestigate 2.1.2 speed on its own Keras-2 models (peer of ``benchmarks/speed.py``).

Runs in a separate venv with TF 2.14 and iNNvestigate (never a tf_clrp dependency)::

    python -m venv /work/venvs/inn
    /work/venvs/inn/bin/pip install tensorflow-cpu==2.14.1 innvestigate==2.1.2 'numpy<2'
    /work/venvs/inn/bin/python benchmarks/speed_innvestigate.py --model vgg16 \
        --json benchmarks/results/speed_innvestigate_vgg16.json

``tf.keras.applications`` VGG16/ResNet50 with ``weights=None`` and logits output, batch 8,
224², graph mode (iNNvestigate 2 requires ``disable_eager_execution``), TF intra-op threads
2, inter-op 1. The forward is the same Keras model run by ``keras.backend.function`` in the
same process. Selection: the fixed class 1 (``neuron_selection_mode="index"``).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import sys
import time
from collections.abc import Callable

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import speed_common as sc  # noqa: E402

DEFAULT_METHODS = ("lrp.sequential_preset_a", "lrp.z_plus")
TARGET_CLASS = 1


def run(
    model_name: str,
    batch: int,
    size: int,
    methods: list[str],
    repeats: int,
    min_repeats: int,
    budget: float,
    threads: int,
    save: Callable[[list[sc.Record]], None],
) -> list[sc.Record]:
    """The forward and each analyzer on one model; ``save`` gets the records so far."""
    import numpy as np
    import tensorflow as tf

    tf.compat.v1.disable_eager_execution()
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    import innvestigate

    tf.keras.utils.set_random_seed(0)
    constructors = {
        "vgg16": tf.keras.applications.VGG16,
        "resnet50": tf.keras.applications.ResNet50,
    }
    model = constructors[model_name](
        weights=None, input_shape=(size, size, 3), classifier_activation=None
    )
    x = np.random.default_rng(0).uniform(-1, 1, (batch, size, size, 3)).astype("float32")
    forward_fn = tf.keras.backend.function(model.inputs, model.outputs)
    forward = sc.measure(lambda: forward_fn([x]), repeats, min_repeats, budget)
    records = [
        sc.make_record(
            "innvestigate",
            model_name,
            "forward",
            batch,
            size,
            forward,
            forward,
            "tf.keras model, keras.backend.function (graph mode)",
        )
    ]
    sc.print_records(records)
    save(records)
    for method in methods:
        start = time.perf_counter()
        analyzer = innvestigate.create_analyzer(method, model, neuron_selection_mode="index")
        setup = time.perf_counter() - start
        timing = sc.measure(
            lambda a=analyzer: a.analyze(x, neuron_selection=TARGET_CLASS),
            repeats,
            min_repeats,
            budget,
        )
        timing.setup_s = setup
        records.append(
            sc.make_record("innvestigate", model_name, method, batch, size, timing, forward)
        )
        sc.print_records(records[-1:])
        save(records)
    return records


def main() -> None:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="vgg16", help="vgg16 or resnet50")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--methods", default=",".join(DEFAULT_METHODS))
    sc.add_timing_args(parser)
    args = parser.parse_args()
    sc.set_thread_env(args.threads)
    sc.print_header()
    versions = {
        p: importlib.metadata.version(p) for p in ("tensorflow-cpu", "innvestigate", "numpy")
    }

    def save(records: list[sc.Record]) -> None:  # after every record: a killed run keeps its part
        sc.save_records(args.json, records, versions, command=sys.argv)

    run(
        args.model,
        args.batch,
        args.size,
        [m for m in args.methods.split(",") if m],
        args.repeats,
        args.min_repeats,
        args.budget,
        args.threads,
        save,
    )


if __name__ == "__main__":
    main()
