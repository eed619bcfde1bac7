"""Keras 2 is the harness's private business.

tfmot only quantizes Keras 2 (``tf_keras``) models, and TensorFlow 2.16+ routes ``tf.keras``
to Keras 3 unless ``TF_USE_LEGACY_KERAS=1`` is set before TensorFlow is imported. Setting it
in the harness's own process would change ``tf.keras`` for every other piece of code there
(the pytest plugin is loaded in every pytest run where the package is installed), so the
harness never sets it at import: the work that needs Keras 2 (training, QAT, conversion, the
layer probes) runs in child processes (``core.child``), whose environment comes from
``child_environment``. ``enter`` is for code that has to run that work in the current process
(the harness's own test suite): it must be called before TensorFlow is imported.
"""
from __future__ import annotations

import os
import sys

KERAS2 = {"TF_USE_LEGACY_KERAS": "1"}
# TensorFlow's C++ INFO/WARNING chatter (oneDNN, CUDA probing) buries the harness's output,
# and oneDNN's reordered float kernels make the float reference differ from run to run.
QUIET_TF = {"TF_CPP_MIN_LOG_LEVEL": "2", "TF_ENABLE_ONEDNN_OPTS": "0"}


def child_environment() -> dict[str, str]:
    env = os.environ.copy()
    env.update(KERAS2)
    for key, value in QUIET_TF.items():
        env.setdefault(key, value)
    return env


def enter() -> None:
    """Select Keras 2 for this process. Raises if TensorFlow was already imported with
    Keras 3 behind ``tf.keras`` (then only a child process can do Keras 2 work)."""
    if "tensorflow" in sys.modules and os.environ.get("TF_USE_LEGACY_KERAS") != "1":
        raise RuntimeError("TensorFlow was imported before Keras 2 was selected; run the "
                           "harness's Keras 2 work through qat_harness.core.child")
    os.environ.update(KERAS2)
    for key, value in QUIET_TF.items():
        os.environ.setdefault(key, value)
