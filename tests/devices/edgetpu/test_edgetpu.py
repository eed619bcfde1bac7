"""Edge TPU adapter without models: the compiler-report parser on the simulator's hand-written
logs (the real outputs are in test_edgetpu_real_outputs.py), device strings, device discovery,
and what probe() says is missing. No TensorFlow, no hardware."""
from __future__ import annotations

import importlib
import platform
import sys
from pathlib import Path

import pytest
from simulators.edgetpu.support import HAND_WRITTEN_LOGS, REAL_OUTPUTS, tool_output

from qat_harness.devices.base import DeviceError
from qat_harness.devices.edgetpu import compiler as etc
from qat_harness.devices.edgetpu import device as edgetpu
from qat_harness.devices.edgetpu import runtime as etr

MIB, KIB = 1024 ** 2, 1024
ENV = ("QAT_EDGETPU_COMPILER", "QAT_EDGETPU_SIMULATOR", "QAT_EDGETPU_LIBRARY",
       "QAT_EDGETPU_SIM_SCENARIO", "QAT_EDGETPU_SIM_UNMAPPABLE")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for name in ENV:
        monkeypatch.delenv(name, raising=False)


def parse(name: str) -> etc.CompilerReport:
    return etc.parse_output(tool_output(HAND_WRITTEN_LOGS / name))


# --- parser ------------------------------------------------------------------------------

def test_full_mapping_log():
    rep = parse("full_mapping_v16.txt")
    assert rep.ok and rep.error is None and rep.outcome is etc.Outcome.SUCCESS
    assert rep.version == "16.0.384591198" and not rep.simulated
    assert rep.compile_ms == 38
    assert rep.input_model == "work/tiny/qat_int8.tflite"
    assert rep.output_model == "work/edgetpu/qat_int8_edgetpu.tflite"
    assert rep.operation_log == "work/edgetpu/qat_int8_edgetpu.log"
    d = etc.to_delegation(rep)
    assert (d.backend, d.ops_total, d.ops_delegated, d.fraction) == ("edgetpu", 4, 4, 1.0)
    assert d.fallback == []
    assert d.details["subgraphs"] == 1
    assert d.details["on_chip_memory"] == int(3.75 * KIB)
    assert d.details["on_chip_memory_remaining"] == round(7.98 * MIB)
    assert d.details["off_chip_memory"] == 0
    assert d.details["compiler_version"] == "16.0.384591198"
    assert [r.op for r in rep.rows] == ["CONV_2D", "MEAN", "FULLY_CONNECTED", "SOFTMAX"]


def test_partial_mapping_with_second_subgraph_tail():
    rep = parse("partial_subgraphs_v16.txt")
    assert rep.outcome is etc.Outcome.PARTIAL and rep.ok and rep.error is None
    d = etc.to_delegation(rep)
    assert (d.ops_total, d.ops_delegated) == (22, 13)
    assert rep.ops_on_cpu == 9
    assert sum(r.count for r in rep.rows) == 22  # the table covers every operator
    assert ("LEAKY_RELU", "Operation not supported") in d.fallback
    assert ("CONV_2D", "More than one subgraph is not supported") in d.fallback
    assert ("QUANTIZE", "Operation is working on an unsupported data type") in d.fallback
    assert ("DEQUANTIZE", "Operation is working on an unsupported data type") in d.fallback
    # the mapped CONV_2D row is not a fallback; the CPU rows' counts add up to the CPU ops
    assert sum(c["count"] for c in d.details["cpu_ops"]) == 9
    assert {c["op"] for c in d.details["cpu_ops"] if c["count"] == 3} == {"CONV_2D"}
    assert d.details["on_chip_memory"] == round(412.25 * KIB)


def test_compiler_15_layout_and_unspecified_limitation():
    rep = parse("partial_unspecified_v15.txt")
    assert rep.ok and rep.version == "15.0.340273435"
    d = etc.to_delegation(rep)
    assert (d.ops_total, d.ops_delegated) == (48, 45)
    assert d.fallback[0] == ("LOGISTIC", "Operation is otherwise supported, but not mapped due to "
                                         "some unspecified limitation")
    assert d.details["off_chip_memory"] == round(1.22 * MIB)
    assert d.details["on_chip_memory_remaining"] == round(2.5 * KIB)


def test_compiled_but_nothing_mapped():
    d = etc.to_delegation(parse("no_subgraph_v16.txt"))
    assert d.details["subgraphs"] == 0
    assert (d.ops_total, d.ops_delegated, d.fraction) == (4, 0, 0.0)
    assert {r for _, r in d.fallback} == {"Operation is working on an unsupported data type"}


def test_summary_without_table_still_counts():
    rep = parse("partial_no_table_v16.txt")
    assert rep.rows == []
    assert (rep.ops_total, rep.delegated()) == (22, 13)


def test_operation_log_file():
    rep = parse("partial_subgraphs_v16.log")
    assert rep.version == "16.0.384591198"
    assert rep.input_model == "mobilenet_leaky_int8.tflite"
    assert rep.ops_total == 22 and rep.delegated() == 13


@pytest.mark.parametrize("path, outcome, reason", [
    (REAL_OUTPUTS / "11_v15_0_model_not_quantized.txt", "not_quantized", "Model not quantized"),
    (REAL_OUTPUTS / "07_v14_1_internal_error_no_blank_line.txt", "crash", "Internal compiler error. Aborting!"),
    (REAL_OUTPUTS / "14_v16_0_failed_large_activation_tensors.txt", "failed",
     "Compilation failed due to large activation tensors in model."),
    (HAND_WRITTEN_LOGS / "failed_no_reason_v16.txt", "failed", "compilation failed (the compiler gave no reason)"),
])
def test_failures(path, outcome, reason):
    rep = etc.parse_output(tool_output(path))
    assert not rep.ok and rep.outcome.value == outcome
    assert rep.error == reason
    assert rep.rows == [] and rep.ops_total is None


def test_every_hand_written_log_says_so_on_line_1():
    for log in HAND_WRITTEN_LOGS.iterdir():
        assert log.read_text().startswith("# hand-written, NOT recorded compiler output: "), log.name


@pytest.mark.parametrize("text, value", [
    ("0.00B", 0), ("512.00B", 512), ("60.00KiB", 60 * KIB), ("1.92MiB", round(1.92 * MIB)),
    ("7.96MiB", round(7.96 * MIB)), (" 2.00GiB ", 2 * 1024 ** 3), ("12 MB", None), ("", None),
])
def test_parse_size(text, value):
    assert etc.parse_size(text) == value


def test_simulator_marker_is_recognised():
    rep = etc.parse_output(f"Edge TPU Compiler version 16.0.384591198 {etc.SIMULATOR_MARKER}\n")
    assert rep.simulated
    assert etc.to_delegation(rep).details["compiler_simulated"] is True


# --- device strings ----------------------------------------------------------------------

@pytest.mark.parametrize("text, kind, index, option", [
    (None, None, None, None), ("", None, None, None), ("usb", "usb", None, "usb"),
    ("usb:0", "usb", 0, "usb:0"), ("usb:3", "usb", 3, "usb:3"), ("pci", "pci", None, "pci"),
    ("pci:1", "pci", 1, "pci:1"), (":0", None, 0, ":0"), (" USB:1 ", "usb", 1, "usb:1"),
])
def test_valid_device_strings(text, kind, index, option):
    spec = etr.parse_device(text)
    assert (spec.kind, spec.index, spec.option) == (kind, index, option)


@pytest.mark.parametrize("text", ["tpu", "usb:", "usb:-1", "usb0", "pci:a", ":", "usb:1:2", "gpu:0"])
def test_invalid_device_strings(text):
    with pytest.raises(ValueError, match="usb, usb:N, pci, pci:N"):
        etr.parse_device(text)


def test_invalid_device_string_is_reported_not_raised():
    dev = edgetpu.EdgeTpuDevice(device="tpu:0")
    avail = dev.probe()
    assert not avail.available
    assert "invalid Edge TPU device string 'tpu:0'" in avail.reason
    assert "device-string" in avail.details["missing"]
    with pytest.raises(DeviceError, match="invalid Edge TPU device string"):
        dev.run(Path("m.tflite"), None)


def test_select_counts_per_kind_and_overall():
    devs = [etr.FoundDevice("pci", "/dev/apex_0"), etr.FoundDevice("usb", "a"), etr.FoundDevice("usb", "b")]
    assert etr.select(devs, etr.parse_device("usb:1")).path == "b"
    assert etr.select(devs, etr.parse_device("usb")).path == "a"
    assert etr.select(devs, etr.parse_device("pci")).path == "/dev/apex_0"
    assert etr.select(devs, etr.parse_device(":2")).path == "b"
    assert etr.select(devs, etr.parse_device("pci:1")) is None


# --- discovery ---------------------------------------------------------------------------

def fake_usb(root: Path, name: str, vendor: str, product: str) -> None:
    d = root / name
    d.mkdir(parents=True)
    (d / "idVendor").write_text(vendor + "\n")
    (d / "idProduct").write_text(product + "\n")


def test_usb_discovery_by_ids(tmp_path):
    fake_usb(tmp_path, "1-1", "1a6e", "089a")    # before the runtime loads the firmware
    fake_usb(tmp_path, "2-3", "18d1", "9302")    # after
    fake_usb(tmp_path, "2-4", "046d", "c52b")    # a mouse
    (tmp_path / "usb1").mkdir()                  # a root hub without ids
    found = etr.find_usb_devices(tmp_path)
    assert [(d.kind, d.ids) for d in found] == [("usb", "1a6e:089a"), ("usb", "18d1:9302")]


def test_pcie_discovery(tmp_path):
    (tmp_path / "apex_0").write_text("")
    (tmp_path / "apex_1").write_text("")
    (tmp_path / "null").write_text("")
    assert [Path(d.path).name for d in etr.find_pci_devices(tmp_path)] == ["apex_0", "apex_1"]


@pytest.mark.parametrize("system, name, hint", [
    ("Linux", "libedgetpu.so.1", "libedgetpu1-std"),
    ("Darwin", "libedgetpu.1.dylib", "install.sh"),
    ("Windows", "edgetpu.dll", "install.bat"),
])
def test_runtime_library_names_per_platform(system, name, hint):
    assert etr.library_name(system) == name
    assert hint in etr.runtime_install_hint(system)
    assert "pip install pycoral" not in etr.runtime_install_hint(system)


def test_runtime_library_override(tmp_path, monkeypatch):
    lib = tmp_path / "libedgetpu.so.1"
    lib.write_bytes(b"")
    monkeypatch.setenv("QAT_EDGETPU_LIBRARY", str(lib))
    assert etr.find_runtime() == str(lib)
    monkeypatch.setenv("QAT_EDGETPU_LIBRARY", str(tmp_path / "absent.so"))
    assert etr.find_runtime() is None


def test_google_pycoral_is_told_apart_from_the_pypi_namesake(tmp_path, monkeypatch):
    pkg = tmp_path / "pycoral"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    assert etr.has_google_pycoral() is False          # PyPI's unrelated 'pycoral'
    (pkg / "utils").mkdir()
    (pkg / "utils" / "edgetpu.py").write_text("")
    assert etr.has_google_pycoral() is True           # Google's layout
    assert "pycoral" not in sys.modules               # decided without importing it


# --- probe -------------------------------------------------------------------------------

@pytest.fixture
def host(tmp_path, monkeypatch):
    """A controlled host: empty PATH, no USB / PCIe devices, x86-64 Linux."""
    bin_dir, sysfs, dev = tmp_path / "bin", tmp_path / "sysfs", tmp_path / "dev"
    for d in (bin_dir, sysfs, dev):
        d.mkdir()
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.setattr(etr, "SYSFS_USB", sysfs)
    monkeypatch.setattr(etr, "DEV_DIR", dev)
    monkeypatch.setattr(platform, "system", lambda: "Linux")
    monkeypatch.setattr(platform, "machine", lambda: "x86_64")
    monkeypatch.setenv("QAT_EDGETPU_LIBRARY", str(tmp_path / "no-libedgetpu.so.1"))
    return {"bin": bin_dir, "sysfs": sysfs, "dev": dev, "tmp": tmp_path, "monkeypatch": monkeypatch}


def real_looking_compiler(folder: Path) -> Path:
    """Stands in for Coral's compiler where only its version line matters (no marker)."""
    path = folder / "edgetpu_compiler"
    path.write_text(f"#!{sys.executable}\nprint('Edge TPU Compiler version 16.0.384591198')\n")
    path.chmod(0o755)
    return path


def add_runtime(host) -> Path:
    lib = host["tmp"] / "libedgetpu.so.1"
    lib.write_bytes(b"")
    host["monkeypatch"].setenv("QAT_EDGETPU_LIBRARY", str(lib))
    return lib


def test_probe_everything_missing(host):
    avail = edgetpu.EdgeTpuDevice().probe()
    assert not avail.available
    assert avail.details["missing"] == ["compiler", "runtime", "device"]
    for text in ("edgetpu_compiler not found", "edgetpu-compiler", "libedgetpu.so.1",
                 "libedgetpu1-std", "1a6e:089a", "18d1:9302", "/apex_*", "gasket-dkms",
                 "coral-edgetpu-stable", "coral.ai/software"):
        assert text in avail.reason, text
    assert "pip install pycoral" not in avail.reason
    assert avail.reason.count("coral-edgetpu-stable") == 1  # the repository is explained once


def test_probe_compiler_missing_only(host):
    fake_usb(host["sysfs"], "2-1", "18d1", "9302")
    add_runtime(host)
    avail = edgetpu.EdgeTpuDevice().probe()
    assert avail.details["missing"] == ["compiler"]
    assert "sudo apt-get install edgetpu-compiler" in avail.reason


def test_probe_on_non_x86_host(host, monkeypatch):
    monkeypatch.setattr(platform, "machine", lambda: "aarch64")
    avail = edgetpu.EdgeTpuDevice().probe()
    assert "compiler" in avail.details["missing"]
    assert "not available on this host (Linux aarch64)" in avail.reason
    assert "x86-64 Linux only" in avail.reason


def test_probe_explicit_compiler_that_does_not_exist(host):
    avail = edgetpu.EdgeTpuDevice(compiler=str(host["tmp"] / "nowhere" / "edgetpu_compiler")).probe()
    assert "compiler" in avail.details["missing"]
    assert "is not an executable file" in avail.reason


def test_probe_runtime_missing_only(host):
    real_looking_compiler(host["bin"])
    fake_usb(host["sysfs"], "2-1", "1a6e", "089a")
    dev = edgetpu.EdgeTpuDevice()
    assert dev.simulated is False and dev.compiler_version == "16.0.384591198"
    avail = dev.probe()
    assert avail.details["missing"] == ["runtime"]
    assert "Edge TPU runtime (libedgetpu.so.1) not found" in avail.reason
    assert "libedgetpu1-std" in avail.reason


def test_probe_device_missing_only(host):
    real_looking_compiler(host["bin"])
    add_runtime(host)
    avail = edgetpu.EdgeTpuDevice(device="usb").probe()
    assert avail.details["missing"] == ["device"]
    assert "no Coral Edge TPU found" in avail.reason and "gasket-dkms" in avail.reason


def test_probe_all_present_and_device_selection(host):
    real_looking_compiler(host["bin"])
    lib = add_runtime(host)
    fake_usb(host["sysfs"], "2-1", "18d1", "9302")
    avail = edgetpu.EdgeTpuDevice(device="usb:0").probe()
    assert avail.available, avail.reason
    assert avail.details["runtime"] == str(lib)
    assert [d["ids"] for d in avail.details["devices"]] == ["18d1:9302"]
    assert not edgetpu.EdgeTpuDevice(device="usb:1").probe().available
    pci = edgetpu.EdgeTpuDevice(device="pci").probe()
    assert pci.details["missing"] == ["device"] and "'pci' not found" in pci.reason
    (host["dev"] / "apex_0").write_text("")
    assert edgetpu.EdgeTpuDevice(device="pci").probe().available


def test_hardware_request_loads_libedgetpu_with_the_device_option(host):
    real_looking_compiler(host["bin"])
    lib = add_runtime(host)
    req = edgetpu.EdgeTpuDevice(device="usb:0")._request(mode="run")
    assert req["delegate"] == {"library": str(lib), "options": {"device": "usb:0"}}
    assert edgetpu.EdgeTpuDevice()._request(mode="run")["delegate"]["options"] == {}


def test_simulator_env_switches_a_real_compiler_to_simulation(host, monkeypatch):
    real_looking_compiler(host["bin"])
    assert edgetpu.EdgeTpuDevice().simulated is False
    monkeypatch.setenv("QAT_EDGETPU_SIMULATOR", "1")
    dev = edgetpu.EdgeTpuDevice()
    assert dev.simulated is True
    assert "delegate" not in dev._request(mode="run")  # runs on the host CPU
    avail = dev.probe()
    assert avail.available and "SIMULATED" in avail.reason and "QAT_EDGETPU_SIMULATOR=1" in avail.reason


def test_prepare_without_compiler_is_a_missing_tool(host, tmp_path):
    with pytest.raises(DeviceError) as err:
        edgetpu.EdgeTpuDevice().prepare(tmp_path / "m.tflite", tmp_path)
    assert err.value.kind == "missing-tool"


def test_probe_on_macos_names_the_dylib_and_coral_installer(host, monkeypatch):
    monkeypatch.setattr(platform, "system", lambda: "Darwin")
    monkeypatch.setattr(platform, "machine", lambda: "arm64")
    avail = edgetpu.EdgeTpuDevice().probe()
    assert avail.details["missing"] == ["compiler", "runtime"]  # no sysfs to look for devices
    assert "not available on this host (Darwin arm64)" in avail.reason
    assert "libedgetpu.1.dylib" in avail.reason and "install.sh" in avail.reason


def test_describe_reports_kind_versions_and_an_unloadable_runtime(host):
    real_looking_compiler(host["bin"])
    lib = add_runtime(host)  # an empty file: the runtime query fails, describe() does not
    info = edgetpu.EdgeTpuDevice(device="pci:0").describe()
    assert (info["device"], info["kind"], info["simulated"]) == ("pci:0", "pci", False)
    assert info["compiler_version"] == "16.0.384591198"
    assert info["runtime_library"] == str(lib)
    assert info["runtime_version"].startswith("unknown (")
