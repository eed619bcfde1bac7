"""The CPU device on a model whose outputs no comparison can use: a DeviceError in one line
(recorded by the run as the device's failure), never an IndexError out of the adapter."""
import numpy as np
import pytest

from qat_harness.devices.base import DeviceError
from qat_harness.devices.litert.cpu import CpuDevice
from qat_harness.trace.graph import cut_model


def test_a_model_without_outputs_is_a_device_error(tiny_models, tmp_path):
    no_outputs = cut_model(tiny_models["float"], [], tmp_path / "no_outputs.tflite")
    dev = CpuDevice(num_threads=1)
    x = np.asarray(tiny_models["x"][:2])
    assert dev.run(tiny_models["float"], x).outputs.shape[0] == 2   # the device itself runs
    with pytest.raises(DeviceError, match="has no outputs: there is nothing to compare"):
        dev.run(no_outputs, x)
