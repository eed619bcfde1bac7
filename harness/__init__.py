"""qat-harness: conformance tests for quantization-aware-trained int8 TFLite models.

Importing the package sets up the TensorFlow environment first (see ``tfenv``): tfmot needs
Keras 2, so ``TF_USE_LEGACY_KERAS=1`` must be in place before anything imports TensorFlow.
"""
from qat_harness import tfenv as _tfenv

_tfenv.configure()

__version__ = "0.1.0"
