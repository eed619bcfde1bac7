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


# -- issue 20 items 1-3: what is fed ---------------------------------------------------------------
SEED_N = 24  # examples in the data sets below


@pytest.fixture(scope="module")
def fed_models(tmp_path_factory):
    """One tiny classifier as a uint8-io .tflite calibrated on [-1, 127/128] (input scale 1/128,
    zero point 128, as a legacy uint8 classifier's), a full-int8 one (int8 input, the same range)
    and a float one; and a [28, 28] grayscale float model: {'uint8', 'int8', 'float', 'gray28': path}."""
    import tensorflow as tf
    import tf_keras as keras
    import user_models

    from qat_harness.build.convert import to_tflite

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(4, 3, activation="relu"),
                              keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(3, activation="softmax")])
    calibration = np.random.default_rng(0).uniform(-1, 127 / 128, (32, 8, 8, 1)).astype(np.float32)
    calibration[0, 0, 0, 0], calibration[1, 0, 0, 0] = -1.0, 127 / 128
    gray = keras.Sequential([keras.Input((28, 28)), keras.layers.Flatten(), keras.layers.Dense(3)])
    folder = tmp_path_factory.mktemp("fed")
    files = {"uint8": user_models.convert(model, calibration=calibration, input_type=tf.uint8,
                                          output_type=tf.uint8),
             "int8": to_tflite(model, full_int8=True, calibration=calibration),
             "float": to_tflite(model, full_int8=False), "gray28": to_tflite(gray, full_int8=False)}
    paths = {name: folder / f"{name}.tflite" for name in files}
    for name, data in files.items():
        paths[name].write_bytes(data)
    return paths


def _prepare(tmp_path, entry, **data):
    return preparation.prepare(parse_entry(str(entry)), preparation.DataOptions(**data),
                               ArtifactCache(tmp_path / "cache"), tmp_path, lambda msg: None)


def _refusal(tmp_path, entry, **data) -> str:
    with pytest.raises(UsageError) as info:
        _prepare(tmp_path, entry, **data)
    assert "\n" not in str(info.value)
    return str(info.value)


def _pixels(shape, seed=1) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (SEED_N, *shape), dtype=np.uint8)


def _raw_runtime(path, examples: np.ndarray) -> np.ndarray:
    """The LiteRT interpreter itself, fed ``examples`` one at a time."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    interpreter.allocate_tensors()
    into, out = interpreter.get_input_details()[0]["index"], interpreter.get_output_details()[0]["index"]
    outputs = []
    for example in examples:
        interpreter.set_tensor(into, example[None])
        interpreter.invoke()
        outputs.append(interpreter.get_tensor(out)[0].copy())
    return np.stack(outputs)


def test_a_uint8_model_fed_its_own_bytes_answers_as_the_raw_runtime(fed_models, tmp_path):
    from qat_harness.core import tflite
    from qat_harness.devices.litert.cpu import CpuDevice

    info = tflite.inspect_model(fed_models["uint8"])
    t = info.tensor(info.inputs[0])
    assert t.dtype == "uint8" and t.zero_points == [128] and t.scales[0] == pytest.approx(1 / 128, rel=1e-3)
    x = _pixels((8, 8, 1))
    np.savez(tmp_path / "bytes.npz", x=x, y=np.arange(SEED_N) % 3)
    model = _prepare(tmp_path, f"{fed_models['uint8']}={fed_models['float']}", dataset=str(tmp_path / "bytes.npz"))

    fed = tflite.model_inputs(info, model.data.x_eval)
    row = {example.tobytes(): i for i, example in enumerate(x)}
    assert all(example.tobytes() in row for example in fed), "the bytes given were not fed as they are"
    given = x[[row[example.tobytes()] for example in fed]]
    assert np.array_equal(CpuDevice().run(fed_models["uint8"], fed).outputs, _raw_runtime(fed_models["uint8"], given))
    # the float model sees the values the bytes stand for
    assert np.allclose(model.data.x_eval, (given.astype(np.float32) - 128) * t.scales[0])
    (feed,) = model.feeds
    assert (feed.scheme, feed.dtype, feed.low, feed.high, feed.clipped) == (
        tflite.FeedScheme.NATIVE, "uint8", float(x.min()), float(x.max()), 0.0)
    assert not model.notes and "native uint8" in model.data_note


def test_values_far_beyond_the_input_range_are_refused_in_one_line(fed_models, tmp_path):
    np.savez(tmp_path / "pixels.npz", x=_pixels((8, 8, 1)).astype(np.float32))
    message = _refusal(tmp_path, fed_models["uint8"], dataset=str(tmp_path / "pixels.npz"))
    assert f"pixels.npz: input '{_input_name(fed_models['uint8'])}': 9" in message  # 9x.x% clipped
    assert "of the values fed (float32 0..255)" in message and "are clipped" in message
    assert "uint8 arrays, which the model takes as they are" in message


def test_values_a_little_beyond_the_input_range_are_a_warning_naming_the_input(fed_models, tmp_path):
    from qat_harness.core import tflite

    x = np.random.default_rng(2).uniform(-1, 0.99, (SEED_N, 8, 8, 1)).astype(np.float32)
    x.reshape(-1)[: x.size // 8] = 3.0  # 12.5% of the values
    np.savez(tmp_path / "x.npz", x=x)
    model = _prepare(tmp_path, fed_models["int8"], dataset=str(tmp_path / "x.npz"))
    (feed,) = model.feeds
    assert feed.scheme is tflite.FeedScheme.QUANTIZED and feed.clipped == 0.125
    (warning,) = model.notes
    assert f"input '{_input_name(fed_models['int8'])}': 12.5% of the values fed" in warning
    assert "1% tolerated" in warning


def _input_name(path) -> str:
    from qat_harness.core import tflite

    info = tflite.inspect_model(path)
    return info.tensor(info.inputs[0]).name


def _png_folder(root, pixels: np.ndarray, mode: str = "L"):
    from PIL import Image

    for i, image in enumerate(pixels):
        (root / f"class{i % 2}").mkdir(parents=True, exist_ok=True)
        Image.fromarray(image.squeeze(-1) if image.ndim == 3 and image.shape[-1] == 1 else image,
                        mode=mode).save(root / f"class{i % 2}" / f"{i:03d}.png")
    return root


def test_raw_pixels_into_a_uint8_input_are_its_own_bytes(fed_models, tmp_path):
    from qat_harness.core import tflite

    pixels = _pixels((8, 8, 1))
    folder = _png_folder(tmp_path / "images", pixels)
    model = _prepare(tmp_path, fed_models["uint8"], dataset=str(folder), preprocess="raw")
    fed = tflite.model_inputs(tflite.inspect_model(fed_models["uint8"]), model.data.x_eval)
    assert sorted(f.tobytes() for f in fed) == sorted(p.tobytes() for p in pixels)
    assert model.feeds[0].scheme is tflite.FeedScheme.NATIVE and "pixels' own bytes" in model.data_note


def test_raw_pixels_into_an_int8_input_of_minus_one_to_one_are_refused(fed_models, tmp_path):
    folder = _png_folder(tmp_path / "images", _pixels((8, 8, 1)))
    message = _refusal(tmp_path, fed_models["int8"], dataset=str(folder), preprocess="raw")
    assert "images: input '" in message and "are clipped" in message


def test_labelled_data_for_a_tflite_pair_is_evaluated_whole(fed_models, tmp_path):
    x = np.random.default_rng(4).uniform(-1, 1, (40, 8, 8, 1)).astype(np.float32)
    np.savez(tmp_path / "labelled.npz", x=x, y=np.arange(40) % 3)
    pair = f"{fed_models['int8']}={fed_models['float']}"
    for entry, data in ((pair, str(tmp_path / "labelled.npz")), (fed_models["int8"], str(tmp_path / "labelled.npz")),
                        (pair, str(_png_folder(tmp_path / "images", _pixels((8, 8, 1))[:20])))):
        model = _prepare(tmp_path, entry, dataset=data)
        n = 40 if data.endswith(".npz") else 20
        assert model.data.x_train is None and len(model.data.x_eval) == len(model.data.y_eval) == n, entry


@pytest.mark.parametrize("outputs,evaluated", [(1, 20), (2, 40)], ids=["trains", "does-not-train"])
def test_a_keras_models_labelled_data_is_split_only_when_it_trains(tmp_path, monkeypatch, outputs, evaluated):
    signature = {"inputs": [{"shape": [None, 3], "dtype": "float32"}],
                 "outputs": [{"shape": [None, 3]}] * outputs, "model_digest": "0" * 64}
    monkeypatch.setattr(preparation, "describe_model", lambda *args, **kwargs: (signature, None))
    seen = {}

    def build(label, source, identity, plan, data, *args, **kwargs):
        seen["data"], seen["plan"] = data, plan
        raise UsageError("stop here")
    monkeypatch.setattr(preparation, "build_artifacts", build)
    np.savez(tmp_path / "d.npz", x=np.zeros((40, 3), np.float32), y=np.arange(40) % 3)
    with pytest.raises(UsageError, match="stop here"):
        preparation.prepare(parse_entry("some_module:make"), preparation.DataOptions(dataset=str(tmp_path / "d.npz")),
                            ArtifactCache(tmp_path / "cache"), tmp_path, lambda msg: None)
    assert len(seen["data"].x_eval) == evaluated and seen["plan"]["qat_epochs"] == (outputs == 1)


def test_a_28x28_grayscale_input_reads_an_image_folder(fed_models, tmp_path):
    from qat_harness.core import tflite
    from qat_harness.devices.litert.cpu import CpuDevice

    info = tflite.inspect_model(fed_models["gray28"])
    assert info.tensor(info.inputs[0]).shape == [1, 28, 28]
    pixels = _pixels((28, 28))
    folder = _png_folder(tmp_path / "digits", pixels)
    model = _prepare(tmp_path, fed_models["gray28"], dataset=str(folder))
    assert model.data.x_eval.shape == (SEED_N, 28, 28) and "grayscale images" in model.data_note
    assert sorted(x.tobytes() for x in model.data.x_eval) == sorted((pixels / 255.0).astype(np.float32).tobytes()
                                                                    for pixels in pixels)
    out = CpuDevice().run(fed_models["gray28"], tflite.model_inputs(info, model.data.x_eval)).outputs
    assert out.shape == (SEED_N, 3) and np.isfinite(out).all()
