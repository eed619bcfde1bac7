"""The benchmark_model output parser on transcripts in the tool's exact format.

No phone was available to record these: each transcript is written line by line from the
format strings of TFLite's sources (benchmark_model.cc, benchmark_tflite_model.cc,
nnapi_delegate_provider.cc, tools/logging.h, core/subgraph.cc, stats_calculator.h; see the
parser's docstring), with the numbers and names of a plausible run. They cover the newer and
the older wordings and the failure texts."""
from __future__ import annotations

import math

import pytest

from qat_harness.devices.android import benchmark_output as bmo

FULL_NNAPI = """\
INFO: STARTING!
INFO: Log parameter values verbosely: [0]
INFO: Min num runs: [20]
INFO: Num threads: [4]
INFO: Min warmup runs: [5]
INFO: Graph: [/data/local/tmp/qat-harness/s1/run1/m1.tflite]
INFO: Enable op profiling: [0]
INFO: Use NNAPI: [1]
INFO: NNAPI accelerators available: [qti-default,qti-dsp,qti-gpu,nnapi-reference]
INFO: Disable NNAPI cpu: [1]
INFO: Loaded model /data/local/tmp/qat-harness/s1/run1/m1.tflite
INFO: Initialized TensorFlow Lite runtime.
INFO: Created TensorFlow Lite delegate for NNAPI.
INFO: Replacing 64 out of 64 node(s) with delegate (TfLiteNnapiDelegate) node, yielding 1 partitions for subgraph 0 (main).
INFO: Explicitly applied NNAPI delegate, and the model graph will be completely executed by the delegate.
INFO: The input model file size (MB): 3.57755
INFO: Initialized session in 412.734ms.
INFO: Running benchmark for at least 5 iterations and at least 0 seconds but terminate if exceeding 150 seconds.
INFO: count=5 first=20418 curr=4511 min=4470 max=20418 avg=7712.4 std=6353

INFO: Running benchmark for at least 20 iterations and at least 0.1 seconds but terminate if exceeding 150 seconds.
INFO: count=23 first=4493 curr=4467 min=4402 max=5120 avg=4530.61 std=139

INFO: Inference timings in us: Init: 412734, First inference: 20418, Warmup (avg): 7712.4, Inference (avg): 4530.61
INFO: Note: as the benchmark tool itself affects memory footprint, the following is only APPROXIMATE to the actual memory footprint of the model at runtime. Take the information at your discretion.
INFO: Memory footprint delta from the start of the tool (MB): init=6.83594 overall=9.11328
"""

PARTIAL_WITH_PROFILE = """\
INFO: STARTING!
INFO: Num threads: [2]
INFO: Graph: [/data/local/tmp/qat-harness/s1/run2/m0.tflite]
INFO: Enable op profiling: [1]
INFO: Use NNAPI: [1]
INFO: NNAPI accelerators available: [google-edgetpu,nnapi-reference]
INFO: Loaded model /data/local/tmp/qat-harness/s1/run2/m0.tflite
INFO: Replacing 28 out of 31 node(s) with delegate (TfLiteNnapiDelegate) node, yielding 3 partitions for the whole graph.
INFO: Explicitly applied NNAPI delegate, and the model graph will be partially executed by the delegate w/ 2 delegate kernels.
INFO: The input model file size (MB): 1.1
INFO: Initialized session in 98.1ms.
INFO: Running benchmark for at least 1 iterations and at least 0.5 seconds but terminate if exceeding 150 seconds.
INFO: count=41 first=31840 curr=11950 min=11702 max=31840 avg=12388.5 std=3055

INFO: Running benchmark for at least 1 iterations and at least 0 seconds but terminate if exceeding 150 seconds.
INFO: count=1 curr=11874

INFO: Operator-wise Profiling Info for Regular Benchmark Runs:
============================== Run Order ==============================
\t             [node type]\t  [first]\t [avg ms]\t     [%]\t  [cdf%]\t  [mem KB]\t[times called]\t[Name]
\t     TfLiteNnapiDelegate\t    7.012\t    7.012\t 59.053%\t 59.053%\t     0.000\t        1\t[conv_block]:28
\t         RESIZE_BILINEAR\t    2.210\t    2.210\t 18.612%\t 77.665%\t     0.000\t        1\t[up/resize]:11
\t     TfLiteNnapiDelegate\t    1.950\t    1.950\t 16.422%\t 94.087%\t     0.000\t        1\t[head]:29
\t         RESIZE_BILINEAR\t    0.702\t    0.702\t  5.913%\t100.000%\t     0.000\t        1\t[up2/resize]:19

============================== Summary by node type ==============================
\t             [Node type]\t  [count]\t  [avg ms]\t    [avg %]\t    [cdf %]\t  [mem KB]\t[times called]
\t     TfLiteNnapiDelegate\t        2\t     8.962\t    75.474%\t    75.474%\t     0.000\t        2
\t         RESIZE_BILINEAR\t        2\t     2.912\t    24.526%\t   100.000%\t     0.000\t        2

Timings (microseconds): count=1 curr=11874
Memory (bytes): count=0
4 nodes observed


INFO: Inference timings in us: Init: 98100, First inference: 31840, Warmup (avg): 12388.5, Inference (avg): 11874
"""

NOT_DELEGATED_OLD_WORDING = """\
STARTING!
Num runs: [50]
Graph: [/data/local/tmp/model.tflite]
Use nnapi : [1]
nnapi accelerator name: [] (Available: mtk-neuron,mtk-dsp)
Loaded model /data/local/tmp/model.tflite
Though NNAPI delegate is explicitly applied, the model graph will not be executed by the delegate.
The input model file size (MB): 0.002384
Initialized session in 1.912ms.
count=1 curr=305

count=50 first=233 curr=201 min=198 max=61234567 avg=1.23457e+06 std=8571622

Average inference timings in us: Warmup: 305, Init: 1912, Inference: 1.23457e+06
"""

OLDER_REPLACING = "INFO: Replacing 30 node(s) with delegate (TfLiteNnapiDelegate) node, yielding 2 partitions.\n"


def test_full_delegation_transcript():
    out = bmo.parse(FULL_NNAPI)
    assert out.completed and not out.errors
    assert (out.init_us, out.first_inference_us, out.warmup_avg_us, out.inference_avg_us) == (
        412734, 20418, 7712.4, 4530.61)
    assert out.warmup.count == 5 and out.warmup.first == 20418 and out.warmup.std == 6353
    assert out.inference.count == 23 and out.inference.min == 4402 and out.inference.max == 5120
    assert out.inference.avg == pytest.approx(4530.61)
    [rep] = out.replacements_for("TfLiteNnapiDelegate")
    assert (rep.replaced, rep.total, rep.partitions) == (64, 64, 1)
    assert out.applied == {"NNAPI": "full"} and out.delegate_kernels == {"NNAPI": 1}
    assert out.accelerators == ["qti-default", "qti-dsp", "qti-gpu", "nnapi-reference"]
    assert out.model_size_mb == pytest.approx(3.57755)
    assert out.node_types == {}  # no op profiling in this run


def test_partial_delegation_with_op_profile():
    out = bmo.parse(PARTIAL_WITH_PROFILE)
    assert out.completed
    [rep] = out.replacements
    assert (rep.delegate, rep.replaced, rep.total, rep.partitions) == ("TfLiteNnapiDelegate", 28, 31, 3)
    assert out.applied["NNAPI"] == "partial" and out.delegate_kernels["NNAPI"] == 2
    # "count=1 curr=X": one run, every statistic is that run
    assert out.inference.count == 1 and out.inference.avg == 11874 and out.inference.std == 0
    # the profile's "Timings (microseconds): count=..." line is not taken for a loop's stats
    assert out.warmup.count == 41
    assert out.node_types == {"TfLiteNnapiDelegate": 2, "RESIZE_BILINEAR": 2}
    assert out.accelerators == ["google-edgetpu", "nnapi-reference"]


def test_not_delegated_older_wording_without_prefixes():
    out = bmo.parse(NOT_DELEGATED_OLD_WORDING)
    assert out.completed
    assert out.applied == {"NNAPI": "none"} and out.delegate_kernels == {"NNAPI": 0}
    assert out.replacements == []
    assert out.accelerators == ["mtk-neuron", "mtk-dsp"]
    assert (out.warmup_avg_us, out.init_us, out.inference_avg_us) == (305, 1912, 1.23457e6)
    assert out.warmup.count == 1 and out.warmup.curr == 305
    assert out.inference.max == 61234567 and out.inference.avg == pytest.approx(1.23457e6)


def test_older_replacing_line_has_no_total():
    [rep] = bmo.parse(OLDER_REPLACING).replacements
    assert (rep.replaced, rep.total, rep.partitions) == (30, None, 2)


def test_all_same_and_empty_loops():
    out = bmo.parse("INFO: count=0\n\nINFO: count=5 curr=812(all same)\n")
    assert out.warmup.count == 0 and out.warmup.avg is None
    assert out.inference.count == 5 and out.inference.min == out.inference.max == out.inference.avg == 812


def test_nan_warmup_average_and_unit_conversion():
    out = bmo.parse("INFO: Inference timings in us: Init: 1200, First inference: 0, Warmup (avg): -nan, "
                    "Inference (avg): 2500\n")
    assert math.isnan(out.warmup_avg_us) and out.inference_avg_us == 2500
    assert bmo.us_to_ms(out.warmup_avg_us) is None and bmo.us_to_ms(out.inference_avg_us) == 2.5


def test_logcat_formatted_summary_is_found():
    line = ("11-28 12:00:01.234  4321  4321 I tflite  : Inference timings in us: Init: 5685, First "
            "inference: 18535, Warmup (avg): 14462.3, Inference (avg): 14575.2")
    out = bmo.parse(line)
    assert out.inference_avg_us == pytest.approx(14575.2) and out.init_us == 5685


@pytest.mark.parametrize("text, expect", [
    ("INFO: STARTING!\nERROR: Could not open '/data/local/tmp/x.tflite'.\n"
     "ERROR: Failed to mmap model /data/local/tmp/x.tflite\nERROR: Benchmarking failed.\n",
     "Failed to mmap model"),
    ("INFO: Use NNAPI: [1]\nERROR: Could not find the specified NNAPI accelerator: npu0. Must be one of: "
     "{qti-dsp,nnapi-reference}.\nERROR: Failed to apply NNAPI delegate.\nERROR: Benchmarking failed.\n",
     "Could not find the specified NNAPI accelerator: npu0"),
    ("INFO: Loaded model /data/local/tmp/m.tflite\nFATAL: The size of /data/local/tmp/in0.bin is 63 bytes. "
     "It should be 64 bytes.\n", "It should be 64 bytes"),
    ("INFO: STARTING!\nERROR: Please specify the name of your TF Lite input file with --graph\n"
     "ERROR: Benchmarking failed.\n", "Please specify the name"),
    ("INFO: Explicitly applied NNAPI delegate, and the model graph will be completely executed by the delegate.\n"
     "ERROR: NN API returned error ANEURALNETWORKS_OP_FAILED at line 1234 while running computation.\n"
     "INFO: Inference timings in us: Init: 1, First inference: 2, Warmup (avg): 2, Inference (avg): 3\n"
     "ERROR: Benchmarking failed.\n", "ANEURALNETWORKS_OP_FAILED"),
])
def test_failure_transcripts(text, expect):
    out = bmo.parse(text)
    assert not out.completed and out.failed
    assert expect in out.error_summary()


def test_unconsumed_flags_are_reported():
    out = bmo.parse("INFO: STARTING!\nWARN: Unconsumed cmdline flags: --use_nnapi=true --output_filepath=/x\n")
    assert out.unconsumed_flags == ["--use_nnapi=true", "--output_filepath=/x"]


def test_no_output_at_all():
    out = bmo.parse("")
    assert not out.completed and not out.failed
    assert out.error_summary() == "benchmark_model printed no timings"


LOGCAT_RUN = """\
05-30 15:16:44.101  3380  3380 I tflite_BenchmarkModelActivity: Running TensorFlow Lite benchmark with args: --graph=/data/local/tmp/m.tflite --use_nnapi=true
05-30 15:16:44.210  3380  3380 I tflite  : Use NNAPI: [1]
05-30 15:16:44.230  3380  3380 I tflite  : NNAPI accelerators available: [qti-dsp,nnapi-reference]
05-30 15:16:44.301  3380  3380 I tflite  : Explicitly applied NNAPI delegate, and the model graph will be partially executed by the delegate w/ 3 delegate kernels.
05-30 15:16:44.402  3380  3380 E ExecutionBuilder: some driver's own complaint
05-30 15:16:45.001  3380  3380 I tflite  : count=5 first=9100 curr=8010 min=7990 max=9100 avg=8240.2 std=430
05-30 15:16:45.362  3380  3380 I tflite  : count=40 first=8011 curr=7903 min=7850 max=8402 avg=7981.5 std=96
05-30 15:16:45.363  3380  3380 I tflite  : Inference timings in us: Init: 51234, First inference: 9100, Warmup (avg): 8240.2, Inference (avg): 7981.5
"""


def test_logcat_formatted_output_parses_like_plain_output():
    out = bmo.parse(LOGCAT_RUN)
    plain = bmo.parse("\n".join(bmo.split_line(line)[1] for line in LOGCAT_RUN.splitlines()))
    assert out.logcat_format and not plain.logcat_format
    assert out.completed and out.errors == []  # another tag's E line is not benchmark_model's error
    assert (out.warmup.count, out.inference.count, out.inference.std) == (5, 40, 96)
    assert out.inference_avg_us == pytest.approx(7981.5) and out.init_us == 51234
    assert out.applied == {"NNAPI": "partial"} and out.delegate_kernels == {"NNAPI": 3}
    assert out.claims_partial_delegation is True and out.claims_full_delegation is False
    assert out.accelerators == ["qti-dsp", "nnapi-reference"] and out.delegate == "nnapi"
    for field in ("init_us", "warmup_avg_us", "inference_avg_us", "warmup", "inference", "applied", "accelerators"):
        assert getattr(out, field) == getattr(plain, field), field


@pytest.mark.parametrize("line", [
    "05-30 15:16:45.400  3380  3380 E tflite  : Failed to apply NNAPI delegate.",
    "E/tflite  ( 3380): Failed to apply NNAPI delegate.",
    "2023-06-14 10:55:21.084 18088-18088 tflite                  org.tensorflow.lite.benchmark        E  "
    "Failed to apply NNAPI delegate.",
])
def test_logcat_error_lines_are_errors(line):
    out = bmo.parse(line + "\n05-30 15:16:45.401  3380  3380 E tflite  : Benchmarking failed.\n")
    assert out.logcat_format and out.failed and not out.completed
    assert out.errors == ["Failed to apply NNAPI delegate.", "Benchmarking failed."]
    assert out.error_summary() == "Failed to apply NNAPI delegate."


def test_provider_lines_without_a_replacing_line():
    full = bmo.parse("INFO: Explicitly applied GPU delegate, and the model graph will be completely executed "
                     "by the delegate.\n")
    assert full.replacements == [] and full.nodes_replaced is None
    assert full.applied == {"GPU": "full"} and full.claims_full_delegation is True
    assert full.delegate == "gpu"
    partial = bmo.parse("Explicitly applied XNNPACK delegate, and the model graph will be partially executed by "
                        "the delegate w/ 4 delegate kernels.\n")
    assert partial.applied == {"XNNPACK": "partial"} and partial.delegate_kernels == {"XNNPACK": 4}
    assert partial.claims_partial_delegation is True and partial.claims_full_delegation is False


def test_bare_failure_lines_of_older_builds_and_verbose_replacing():
    out = bmo.parse("XNNPACK delegate created.\nFailed to apply XNNPACK delegate.\nBenchmarking failed.\n")
    assert out.errors == ["Failed to apply XNNPACK delegate.", "Benchmarking failed."] and out.failed
    verbose = bmo.parse("VERBOSE: Replacing 7 out of 9 node(s) with delegate (TfLiteGpuDelegateV2) node, "
                        "yielding 3 partitions for the whole graph.\nINFO: Tensorflow Version : 2.15.0\n")
    assert (verbose.nodes_replaced, verbose.nodes_total, verbose.delegate) == (7, 9, "gpu")
    assert verbose.tflite_version == "2.15.0"


def test_only_an_initialization_profile_gives_no_node_types():
    text = PARTIAL_WITH_PROFILE.replace("Operator-wise Profiling Info for Regular Benchmark Runs",
                                        "Profiling Info for Benchmark Initialization")
    assert bmo.parse(text).node_types == {}
