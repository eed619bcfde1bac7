"""The fix measured on devices and reported: a device without mixed float/int8 models is not
run and says what the mix costs there; the report line reads "+N points, Nx size, Nx speed";
a .tflite is refused in one line."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from qat_harness.cli import main
from qat_harness.devices.edgetpu.device import EdgeTpuDevice
from qat_harness.sensitivity import report
from qat_harness.sensitivity.deploy import FIXED, FULL, DeviceCost, FileFacts, measure_devices
from qat_harness.sensitivity.measure import TOP1, TaskMetric
from qat_harness.sensitivity.plan import UnitInfo
from qat_harness.sensitivity.propose import Proposal, Step
from qat_harness.sensitivity.service import FixedModel, SensitivityResult


class _IntegerOnly(EdgeTpuDevice):
    """The Edge TPU's declared facts, never opened: ``run`` must not be reached."""

    def __init__(self):  # no compiler, no delegate
        pass

    def run(self, *args, **kwargs):
        raise AssertionError("a device without mixed models must not run the fixed file")


def test_a_device_without_mixed_models_is_not_run_and_the_cost_is_said(tmp_path):
    costs = measure_devices({}, {"edgetpu": _IntegerOnly()}, np.zeros((1, 2)), None, [], None, tmp_path, None)
    assert costs == [DeviceCost("edgetpu", not_measured=EdgeTpuDevice.mixed_precision_cost)]
    assert "CPU" in (EdgeTpuDevice.mixed_precision_cost or "")


def _fixed(costs: list[DeviceCost]) -> FixedModel:
    facts = {FULL: FileFacts(100_000, (), 20), FIXED: FileFacts(104_000, ("FULLY_CONNECTED",), 22)}
    metric = TaskMetric(TOP1, agreement=1.0, accuracy=0.9, float_accuracy=0.9)
    return FixedModel(("conv_pw_13",), {}, facts, {FULL: metric, FIXED: metric}, costs, "fine-tuned")


def test_the_cost_line_gives_points_size_and_speed():
    cost = DeviceCost("cpu", {FULL: TaskMetric(TOP1, 0.9, 0.900, 0.92), FIXED: TaskMetric(TOP1, 0.99, 0.909, 0.92)},
                      {FULL: 1.0, FIXED: 1.0 / 0.97})
    assert report.cost_line(_fixed([cost]), cost) == (
        "cpu: keep `conv_pw_13` float: +0.9 points, 1.04x size, 0.97x speed")
    edge = DeviceCost("edgetpu", not_measured="int8 only")
    assert report.cost_line(_fixed([edge]), edge) == (
        "edgetpu: keep `conv_pw_13` float: 1.04x size; not run: int8 only")


def test_the_report_names_measured_and_cut_layers(tmp_path):
    from qat_harness.sensitivity.plan import LayerSensitivity

    metric = TaskMetric(TOP1, agreement=0.5)
    units = [UnitInfo("a", "Dense", ("a",)), UnitInfo("b", "Conv2D", ("b",))]
    layers = [LayerSensitivity(units[0], None, metric, metric), LayerSensitivity(units[1], None)]
    result = SensitivityResult("m", TOP1, "bounds", units, metric, layers,
                               Proposal(("a",), (Step(("a",), metric),), False, "the budget ran out"), 10.0, 12.0)
    md, js = report.write(result, tmp_path)
    text = md.read_text()
    assert "Measured: a. Cut by the budget: b." in text
    assert '"cut": [\n    "b"\n  ]' in js.read_text()


def test_a_tflite_model_is_refused_in_one_line(tiny_models, tmp_path, capsys):
    code = main(["sensitivity", "--models", str(Path(tiny_models["int8"])), "--out", str(tmp_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "needs a Keras source" in err[0]
