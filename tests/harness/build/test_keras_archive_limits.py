"""A ``.keras`` archive holds only what a Keras archive holds, declares no more than its data
can unpack to, and whatever a loader unpacks goes into the builder child's private folder,
deleted with it (issue 19, item 3: a refused 2 MB file left 2.1 GiB in $TMPDIR)."""
from __future__ import annotations

import json
import tempfile
import zipfile

import pytest
from hostile_keras_files import ModelFiles

from qat_harness import sources
from qat_harness.build import artifacts, keras3
from qat_harness.core.errors import UsageError


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> ModelFiles:
    return ModelFiles(tmp_path_factory.mktemp("archives"))


def with_members(base, path, extra: dict[str, bytes], replace: dict[str, bytes] | None = None,
                 compression=zipfile.ZIP_STORED):
    """A copy of the archive ``base`` with members added or replaced."""
    replace = replace or {}
    with zipfile.ZipFile(base) as source, zipfile.ZipFile(path, "w", compression=compression) as target:
        for member in source.infolist():
            target.writestr(member.filename, replace.get(member.filename, source.read(member)))
        for name, data in extra.items():
            target.writestr(name, data)
    return path


def refusal(path) -> str:
    with pytest.raises(UsageError) as caught:
        sources.parse_entry(str(path))
    message = str(caught.value)
    assert "\n" not in message and message.startswith(f"{path.name}: ")
    return message


@pytest.mark.parametrize("name", ["evil.py", "model.weights.h5.bak", "assets/../escape.txt",
                                  "/etc/passwd", "assets//x", "assets\\x"])
@pytest.mark.parametrize("form", ["keras", "keras3"])
def test_a_member_a_keras_archive_does_not_have_is_refused(files, tmp_path, form, name):
    path = with_members(files.base(form), tmp_path / "extra.keras", {name: b"x"})
    assert "unexpected file" in refusal(path)


@pytest.mark.parametrize("form", ["keras", "keras3"])
def test_assets_are_a_keras_archive_member(files, tmp_path, form):
    path = with_members(files.base(form), tmp_path / "assets.keras", {"assets/vocabulary.txt": b"a\nb\n"})
    assert keras3.read_keras_archive(path).is_keras3 == (form == "keras3")


def test_a_member_declaring_far_more_than_its_compressed_data_is_refused(files, tmp_path):
    """64 MiB of zeros deflate to ~64 KiB: a ratio no weights file has."""
    zeros = bytes(64 * 2**20)
    path = with_members(files.base("keras"), tmp_path / "bomb.keras", {"assets/zeros.bin": zeros},
                        compression=zipfile.ZIP_DEFLATED)
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo("assets/zeros.bin")
        assert info.file_size > keras3.MAX_EXPANSION * info.compress_size + keras3.EXPANSION_SLACK_BYTES
    assert "declares 67,108,864 bytes unpacked" in refusal(path)


def test_the_whole_archive_has_an_absolute_limit(files, tmp_path, monkeypatch):
    path = with_members(files.base("keras"), tmp_path / "big.keras", {"assets/blob.bin": bytes(4096)})
    monkeypatch.setattr(keras3, "MAX_ARCHIVE_UNCOMPRESSED_BYTES", 4096)
    assert "the archive unpacks to" in refusal(path)


def test_a_json_member_nested_beyond_the_parser_is_one_line(files, tmp_path):
    deep = b"[" * 100_000 + b"]" * 100_000
    path = with_members(files.base("keras"), tmp_path / "deep.keras", {},
                        replace={"config.json": deep})
    assert "config.json is not valid JSON" in refusal(path)


def test_an_archive_unpacked_by_the_builder_child_leaves_nothing_in_tmpdir(files, tmp_path, monkeypatch):
    """tf_keras unpacks an archive of more than 3 members (weights included) into the temp
    folder and leaves it there when loading fails. The builder child's temp folder is its
    private folder, deleted by ``run_child``: nothing stays in $TMPDIR."""
    import h5py

    weights = tmp_path / "empty.weights.h5"
    with h5py.File(weights, "w"):
        pass  # valid HDF5 without the variables: loading fails after the archive is unpacked
    path = with_members(files.base("keras"), tmp_path / "unpacked.keras",
                        {"assets/notes.txt": b"x" * 100_000},
                        replace={"model.weights.h5": weights.read_bytes()})
    source = sources.parse_entry(str(path))  # the parent lets it through: members are fine
    tmpdir = tmp_path / "tmpdir"
    tmpdir.mkdir()
    monkeypatch.setenv("TMPDIR", str(tmpdir))
    monkeypatch.setattr(tempfile, "tempdir", None)  # gettempdir() reads TMPDIR again
    workdir = tmp_path / "work"
    with pytest.raises(UsageError, match=r"^unpacked\.keras: tf_keras cannot load it: "):
        artifacts.describe_model(source.request(), workdir)
    assert sorted(p.name for p in tmpdir.iterdir()) == []


def test_config_and_metadata_are_read_from_a_legit_archive(files):
    archive = keras3.read_keras_archive(files.base("keras3"))
    assert archive.is_keras3 and json.dumps(archive.config)
