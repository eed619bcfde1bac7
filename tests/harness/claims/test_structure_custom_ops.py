"""Issue 20 item 16: only an ``edgetpu-custom-op`` holds a compiled model. Any other custom op
(TFLite_Detection_PostProcess, a user's own) is not called compiled, nor the user told to give
"the uncompiled .tflite" they already gave."""
from qat_harness import claims
from qat_harness.claims.structure import Loadability, StructureFacts
from qat_harness.results import Verdict


def _reasons(*custom_ops):
    results = claims.judge_structure("m", StructureFacts("int8", None, False, custom_ops=custom_ops), Loadability())
    assert [r.verdict for r in results[1:]] == [Verdict.SKIP] * 3
    return {r.reason for r in results[1:]}


def test_an_edgetpu_custom_op_is_a_compiled_model():
    (reason,) = _reasons("CUSTOM:edgetpu-custom-op")
    assert "compiled by edgetpu_compiler" in reason and "uncompiled .tflite" in reason


def test_another_custom_op_is_not_called_compiled():
    (reason,) = _reasons("CUSTOM:TFLite_Detection_PostProcess")
    assert "TFLite_Detection_PostProcess" in reason
    assert "compiled" not in reason
