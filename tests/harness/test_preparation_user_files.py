"""Issue 19 item 12, through preparation and the CLI: a user's data set that is a FIFO or holds
NaN is one line (exit 2), never a hang; a Keras model's declared input shape is bounded before
any data is made for it."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

from qat_harness import cli, preparation
from qat_harness.build.cache import ArtifactCache
from qat_harness.core.errors import UsageError
from qat_harness.sources import parse_entry


def _run(capsys, tmp_path, *argv):
    out = tmp_path / "out"
    code = cli.main(["run", "--devices", "cpu", "--skip-bitwidth", "--out", str(out), *argv])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("qat-harness")]
    assert "Traceback" not in err and len(lines) == 1, err
    report = json.loads((out / "report.json").read_text()) if (out / "report.json").exists() else None
    return code, lines[0], report


@pytest.mark.timeout(300, method="signal")
def test_a_fifo_dataset_ends_the_model_in_one_line(tiny_models, tmp_path, capsys):
    fifo = tmp_path / "data.npz"
    os.mkfifo(fifo)
    code, line, report = _run(capsys, tmp_path, "--models", str(tiny_models["int8"]), "--dataset", str(fifo))
    assert code == cli.EXIT_USAGE and "not a regular file (a FIFO)" in line
    assert "FIFO" in report["models"]["int8.tflite"]["error"]


def test_nan_in_the_dataset_ends_the_model_in_one_line(tiny_models, tmp_path, capsys):
    x = np.asarray(tiny_models["x"]).copy()
    x[2, 0, 0, 0] = np.nan
    np.savez(tmp_path / "data.npz", x=x, y=np.arange(len(x)) % 3)
    code, line, _ = _run(capsys, tmp_path, "--models", str(tiny_models["int8"]),
                         "--dataset", str(tmp_path / "data.npz"))
    assert code == cli.EXIT_USAGE and "NaN or infinite" in line and "example 2" in line


@pytest.mark.parametrize("shape,words", [
    ([None, 100_000, 100_000, 3], "more than the"),
    ([None, None, None, 3], "every dimension must be at least 1"),
    ([None, 0, 8, 1], "every dimension must be at least 1"),
], ids=["huge", "open-size", "zero"])
def test_a_keras_models_declared_input_is_bounded_before_data_is_made(tmp_path, monkeypatch, shape, words):
    signature = {"inputs": [{"shape": shape, "dtype": "float32"}], "outputs": [{"shape": [None, 3]}],
                 "model_digest": "0" * 64}
    monkeypatch.setattr(preparation, "describe_model", lambda *args, **kwargs: (signature, None))

    def never(*args, **kwargs):
        raise AssertionError("data was made for an input shape that was not checked")
    monkeypatch.setattr(preparation, "user_data", never)
    with pytest.raises(UsageError) as info:
        preparation.prepare(parse_entry("some_module:make"), preparation.DataOptions(),
                            ArtifactCache(tmp_path / "cache"), tmp_path, lambda msg: None)
    assert words in str(info.value) and "fixed input size" in str(info.value)
