"""Issue 19 item 12, models: a .tflite's declared input shapes are bounded before anything is
allocated from them. A dimension below 1 or more than ``MAX_INPUT_ELEMENTS`` elements is
``InvalidModel`` in one line naming the input, and a run refuses the file with exit 2."""
from __future__ import annotations

import json

import pytest
from user_models import with_input_shape

from qat_harness import cli
from qat_harness.core import tflite

ABSURD = [[1, 0, 8, 1], [1, -3, 8, 1], [0, 8, 8, 1], [1, 100_000, 100_000, 3], [2 ** 31 - 1, 8, 8, 1]]


@pytest.mark.parametrize("shape", ABSURD, ids=["zero", "negative", "zero-batch", "huge", "huge-batch"])
def test_an_absurd_declared_input_shape_is_invalid(tiny_models, shape):
    data = with_input_shape(tiny_models["int8"].read_bytes(), shape)
    with pytest.raises(tflite.InvalidModel) as info:
        tflite.inspect_model(data)
    message = str(info.value)
    assert "\n" not in message and "declares the shape" in message and str(shape) in message


def test_the_limit_is_on_all_elements_and_a_fitting_shape_reads(tiny_models):
    side = int((tflite.MAX_INPUT_ELEMENTS // 3) ** 0.5)
    fits = with_input_shape(tiny_models["int8"].read_bytes(), [1, side, side, 3])
    info = tflite.inspect_model(fits)
    assert info.tensor(info.inputs[0]).shape == [1, side, side, 3]
    over = with_input_shape(tiny_models["int8"].read_bytes(), [1, side + 1, side + 1, 3])
    with pytest.raises(tflite.InvalidModel, match=f"more than the {tflite.MAX_INPUT_ELEMENTS}"):
        tflite.inspect_model(over)


@pytest.mark.timeout(300)
def test_a_run_refuses_the_file_in_one_line_before_allocating(tiny_models, tmp_path, capsys):
    bad = tmp_path / "huge_input.tflite"
    bad.write_bytes(with_input_shape(tiny_models["int8"].read_bytes(), [1, 100_000, 100_000, 3]))
    out = tmp_path / "out"
    code = cli.main(["run", "--models", str(bad), "--devices", "cpu", "--skip-bitwidth", "--out", str(out)])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("qat-harness")]
    assert code == cli.EXIT_USAGE and "Traceback" not in err, err
    assert len(lines) == 1 and "declares the shape [1, 100000, 100000, 3]" in lines[0]
    report = json.loads((out / "report.json").read_text())
    assert "declares the shape" in report["models"][bad.name]["error"]


@pytest.mark.timeout(60, method="signal")
def test_a_fifo_or_a_folder_given_as_a_model_is_invalid_not_a_hang(tmp_path):
    import os

    os.mkfifo(tmp_path / "pipe.tflite")
    (tmp_path / "folder.tflite").mkdir()
    with pytest.raises(tflite.InvalidModel, match=r"pipe\.tflite is not a regular file \(a FIFO\)"):
        tflite.inspect_model(tmp_path / "pipe.tflite")
    with pytest.raises(tflite.InvalidModel, match="is a folder"):
        tflite.inspect_model(tmp_path / "folder.tflite")
