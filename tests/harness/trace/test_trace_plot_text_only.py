"""Issue 19 item 13, for the trace: a culprit layer or a device whose name holds ``$`` is drawn
in trace.png as the text it is, never parsed as matplotlib mathtext."""
from qat_harness.measure.difference import OutputDifference
from qat_harness.trace.output import write_plot
from qat_harness.trace.results import (
    Bisection,
    BisectionStatus,
    Culprit,
    DeviceCut,
    OpTrace,
    QuantError,
    Stage,
    Thresholds,
    TraceResult,
)

MATH = r"$\frac{$ layer_$x^2$"


def test_a_trace_plot_names_a_culprit_layer_whose_name_holds_dollar_signs(tmp_path):
    ops = [OpTrace(i, "CONV_2D", i, f"t{i}", MATH, [MATH], [1, 4], "int8", 0.1, 0,
                   quant=QuantError(0.1, 0.05, 0.01 * (i + 1), 1.0, 0.5, mean_steps=0.5),
                   devices={MATH: DeviceCut(i > 1, OutputDifference("t", "int8 steps", 0.5, max_steps=i))})
           for i in range(3)]
    thresholds = Thresholds(threshold_steps=2.0, threshold_rel=0.1, jump_factor=3.0)
    result = TraceResult("float.tflite", "int8.tflite", 4, thresholds, ops,
                         Culprit(2, "CONV_2D", MATH, Stage.DEVICE, "t2", MATH, device=MATH), None,
                         {MATH: Bisection(BisectionStatus.DEPARTS, MATH, [], first_departing_op=2)}, [])
    path = write_plot(result, tmp_path)
    assert path is not None and path.read_bytes().startswith(b"\x89PNG")
