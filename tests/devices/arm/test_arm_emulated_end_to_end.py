"""A real int8 model on LiteRT's aarch64 kernels under QEMU: the dot-product and I8MM levels
compute what the reference kernels compute, and SME on QEMU 7.2 (known to compute XNNPACK's
SME kernels wrong) is caught by the level check as "emulator or kernel, unconfirmed".
Skips with the probe's one line where the emulator is not set up (``qat-harness setup arm-cpu``)."""
import pytest

from qat_harness.core.tflite import inspect_model, model_inputs
from qat_harness.devices.arm.device import LEVEL_DEVICES
from qat_harness.devices.base import Role
from qat_harness.devices.litert.cpu import CpuRefDevice
from qat_harness.measure.agreement import versus_reference
from qat_harness.measure.level_agreement import UNCONFIRMED, level_agreement


@pytest.fixture(scope="module")
def arm_ready():
    availability = LEVEL_DEVICES["dotprod"]().probe()
    if not availability.available:
        pytest.skip(availability.reason)


@pytest.fixture(scope="module")
def tiny_int8(tiny_models):
    info = inspect_model(tiny_models["int8"])
    inputs = model_inputs(info, tiny_models["x"])
    reference = CpuRefDevice(num_threads=1).run(tiny_models["int8"], inputs).all_outputs
    return tiny_models["int8"], info, inputs, reference


@pytest.fixture(scope="module")
def level_outputs(arm_ready, tiny_int8):
    """The tiny int8 file on three levels, each run once for the module (each emulated run
    starts CPython, numpy and LiteRT under QEMU: seconds)."""
    path, _, inputs, _ = tiny_int8
    outputs = {}
    for level in ("dotprod", "i8mm", "sme"):
        device = LEVEL_DEVICES[level]()
        assert device.role is Role.EMULATED and device.describe()["emulated"] is True
        outputs[device.name] = device.run(path, inputs, timeout_s=600).all_outputs
    return outputs


def test_emulated_levels_compute_what_the_reference_kernels_compute(tiny_int8, level_outputs):
    _, info, _, reference = tiny_int8
    for name in ("arm-cpu-dotprod", "arm-cpu-i8mm"):
        (difference,) = versus_reference(level_outputs[name], reference, info)
        assert difference.max_steps <= 1, (name, difference)
    faithful = {name: level_outputs[name] for name in ("arm-cpu-dotprod", "arm-cpu-i8mm")}
    assert level_agreement(faithful, [info.tensor(t) for t in info.outputs]).finding is None


def test_the_sme_fault_is_caught_as_emulator_or_kernel(tiny_int8, level_outputs):
    _, info, _, reference = tiny_int8
    check = level_agreement(level_outputs, [info.tensor(t) for t in info.outputs])
    assert check.finding is not None and check.finding.startswith(UNCONFIRMED)
    assert [(p.a, p.b) for p in check.disagreeing] == [("arm-cpu-dotprod", "arm-cpu-sme"),
                                                       ("arm-cpu-i8mm", "arm-cpu-sme")]
    (sme,) = versus_reference(level_outputs["arm-cpu-sme"], reference, info)
    assert sme.max_steps > 4, sme
