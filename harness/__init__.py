"""qat-harness: conformance tests for quantization-aware-trained int8 TFLite models.

Importing the package has no side effects: in particular it never selects Keras 2 for the
importing process (see ``core.keras2``), since the pytest plugin imports it in every pytest
run where the package is installed.
"""

__version__ = "0.2.0"
