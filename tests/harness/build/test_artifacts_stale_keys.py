"""Issue 19 item 6: artifacts are keyed on what was really used, never on a name. Another
data set under the same file name, or a factory whose imported helper module changed, gets a
rebuild (real builder children: describe, build, convert); the same content gets a hit."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from qat_harness.build.artifacts import describe_model
from qat_harness.build.cache import ArtifactCache
from qat_harness.core import tflite
from qat_harness.preparation import DataOptions, prepare
from qat_harness.sources import parse_entry

pytest_plugins = ["user_models"]


def _prepare(entry: str, cache: ArtifactCache, workdir: Path, dataset: Path | None = None):
    return prepare(parse_entry(entry), DataOptions(dataset=str(dataset) if dataset else None), cache,
                   workdir, progress=lambda msg: None)


def _labelled_npz(path: Path, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 1, (48, 8, 8, 1)).astype(np.float32)
    np.savez(path, x=x, y=rng.integers(0, 3, 48))
    return path


@pytest.fixture
def factory(user_models, tmp_path, monkeypatch):
    """(``module:function`` of a factory with a Dense(3) head from its helper module, an empty
    cache), run from the factory's folder as a user would."""
    code = tmp_path / "code"
    ref = user_models.factory_with_helper(code, head_units=3)
    monkeypatch.chdir(code)
    return ref, ArtifactCache(tmp_path / "cache")


@pytest.mark.slow
@pytest.mark.heavy   # two builds; a Keras file replaced under its name is rebuilt in CI's run of this module
def test_a_same_named_npz_with_other_data_is_rebuilt(factory, tmp_path):
    ref, cache = factory
    data = tmp_path / "data.npz"

    first = _prepare(ref, cache, tmp_path / "w1", _labelled_npz(data, seed=1))
    assert first.from_cache is False
    _labelled_npz(data, seed=2)  # another data set, same file name
    second = _prepare(ref, cache, tmp_path / "w2", data)
    assert second.from_cache is False, "QAT ranges fine-tuned on the old data.npz were reused"
    assert second.folder != first.folder

    moved = tmp_path / "elsewhere.npz"
    moved.write_bytes(data.read_bytes())  # the same arrays under another name: nothing to redo
    third = _prepare(ref, cache, tmp_path / "w3", moved)
    assert third.from_cache is True and third.folder == second.folder


@pytest.mark.slow
@pytest.mark.heavy   # two builds; the key's other inputs are rebuilt on change in CI's tests here
def test_a_factory_whose_imported_module_changed_is_rebuilt(factory, user_models, tmp_path):
    ref, cache = factory

    def outputs(prepared) -> list:
        info = tflite.inspect_model(prepared.variants["qat_int8"])
        return info.tensor(info.outputs[0]).shape

    first = _prepare(ref, cache, tmp_path / "w1")
    assert first.from_cache is False and outputs(first) == [1, 3]
    user_models.factory_with_helper(tmp_path / "code", head_units=7)  # only the helper module changes
    second = _prepare(ref, cache, tmp_path / "w2")
    assert outputs(second) == [1, 7], "the report would describe the old Dense(3) model"
    assert second.from_cache is False
    # the factory seeds nothing itself: the builder's fixed seed makes it the same model again
    third = _prepare(ref, cache, tmp_path / "w3")
    assert third.from_cache is True and outputs(third) == [1, 7]
    assert not [n for n in third.notes if "rebuilt on every run" in n]


def test_a_keras_file_replaced_under_its_name_gets_another_model_digest(tmp_path):
    import tf_keras

    path = tmp_path / "model.h5"
    digests = []
    for seed in (1, 2):
        tf_keras.utils.set_random_seed(seed)
        tf_keras.Sequential([tf_keras.Input((4,)), tf_keras.layers.Dense(2)]).save(path)
        source = parse_entry(str(path))
        signature, _ = describe_model(source.request(), tmp_path / f"describe{seed}")
        digests.append(signature["model_digest"])
    again, _ = describe_model(parse_entry(str(path)).request(), tmp_path / "describe-again")
    assert digests[0] != digests[1]
    assert again["model_digest"] == digests[1]


def test_a_model_that_differs_between_loads_is_said_to_be_rebuilt_every_run(tmp_path, monkeypatch):
    from qat_harness import preparation
    from qat_harness.build.artifacts import Artifacts

    signature = {"inputs": [{"shape": [None, 4]}], "outputs": [{"shape": [None, 2]}],
                 "model_digest": "a" * 64, "notes": []}
    monkeypatch.setattr(preparation, "describe_model", lambda *args, **kwargs: (signature, None))
    built = {}

    def build_artifacts(label, source, identity, plan, data, pretrained, cache, progress, timeout_s):
        built["identity"] = identity
        return Artifacts(label, tmp_path, {}, {"model_digest": "b" * 64}, from_cache=False)
    monkeypatch.setattr(preparation, "build_artifacts", build_artifacts)
    prepared = _prepare("some_module:make", ArtifactCache(tmp_path / "cache"), tmp_path)
    assert built["identity"] == {"model": "a" * 64}  # keyed on the model described, not on a name
    assert [n for n in prepared.notes if "rebuilt on every run" in n]
