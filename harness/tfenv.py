"""TensorFlow environment set-up that has to happen before TensorFlow is imported.

tfmot only quantizes Keras 2 models, and TensorFlow 2.16+ defaults to Keras 3; the switch
``TF_USE_LEGACY_KERAS=1`` routes ``tf.keras`` to the ``tf_keras`` package. The harness sets it
itself so users never have to. The child processes inherit it through ``os.environ``.
"""
import os


def configure() -> None:
    os.environ["TF_USE_LEGACY_KERAS"] = "1"
    # TensorFlow's C++ INFO/WARNING chatter (oneDNN, CUDA probing) buries the harness's output.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")  # bit-stable float reference
