"""Importing TensorFlow without its C++ start-up log lines (unless asked for).

TensorFlow 2.21 prints oneDNN / CUDA-driver notices at import even with
``TF_CPP_MIN_LOG_LEVEL=3`` (they are logged before absl's logging is initialised,
tensorflow/tensorflow#100442). Unless the user set ``TF_CPP_MIN_LOG_LEVEL`` or passed
``--verbose``, the CLI sets the level to 3 and imports TensorFlow with the process's stderr
captured, then replays every captured line that is not a C++ log line.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile

#: What TensorFlow's C++ logging prints: absl/glog lines ("I0000 00:00:17.5  123 port.cc:153]
#: ...") at levels I, W and E, the absl notice before them, and cpu_feature_guard's second line.
TF_LOG_LINE = re.compile(
    r"^(?:[IWE]\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ [\w./-]+:\d+\] "
    r"|WARNING: All log messages before absl::InitializeLog\(\) is called"
    r"|\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: [IWE] [\w./-]+:\d+\] "
    r"|To enable the following instructions: .* rebuild TensorFlow)"
)


def import_tensorflow(verbose: bool = False) -> None:
    """Imports TensorFlow and Keras, quietly unless ``verbose`` or the user chose a log level.

    Args:
        verbose: Keep TensorFlow's log lines (and its default log level).
    """
    if "tensorflow" in sys.modules:
        return
    if verbose or "TF_CPP_MIN_LOG_LEVEL" in os.environ:
        import keras  # noqa: F401
        import tensorflow  # noqa: F401

        return
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import keras  # noqa: F401
            import tensorflow as tf

            tf.config.list_physical_devices()  # device set-up logs (cuInit) happen here
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            text = captured.read().decode("utf-8", "replace")
            kept = [line for line in text.splitlines(keepends=True) if not TF_LOG_LINE.match(line)]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()
