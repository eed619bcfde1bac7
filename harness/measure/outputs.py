"""Every variant's outputs on one device: the files prepared for it (compiled, where a device
compiles), then run on the evaluation examples, every output kept. What a device refuses is
recorded as an error for that variant, never as a partial success."""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np

from qat_harness.core.errors import DeviceError
from qat_harness.devices.base import Delegation, Device, ModelInputs
from qat_harness.variants import Variant

#: a variant's evaluation examples, typed for its file's inputs
InputsFor = Callable[[str], ModelInputs]


@dataclasses.dataclass
class DeviceFiles:
    """The files a device will run, per variant, and what preparing them said."""
    paths: dict[str, Path] = dataclasses.field(default_factory=dict)
    delegation: dict[str, Delegation] = dataclasses.field(default_factory=dict)
    errors: dict[str, str] = dataclasses.field(default_factory=dict)   # 'prepare:<variant>' -> reason


@dataclasses.dataclass
class DeviceOutputs:
    outputs: dict[str, list[np.ndarray]] = dataclasses.field(default_factory=dict)
    delegation: dict[str, Delegation] = dataclasses.field(default_factory=dict)
    errors: dict[str, str] = dataclasses.field(default_factory=dict)   # 'run:<variant>' -> reason


def prepare_files(dev: Device, variants: Mapping[str, Path], workdir: Path) -> DeviceFiles:
    files = DeviceFiles()
    for v, source in variants.items():
        try:
            files.paths[v], delegation = dev.prepare(source, workdir)
            if delegation is not None:
                files.delegation[v] = delegation
        except DeviceError as exc:
            files.errors[f"prepare:{v}"] = exc.reason
            if v == Variant.FLOAT:  # a float model rarely compiles for an accelerator: run as is
                files.paths[v] = source
    return files


def run_files(dev: Device, paths: Mapping[str, Path], inputs_for: InputsFor,
              output_counts: Mapping[str, int], timeout_s: float) -> DeviceOutputs:
    """Each file on the evaluation examples; ``output_counts``: how many outputs each file has."""
    result = DeviceOutputs()
    for v, path in paths.items():
        try:
            res = dev.run(path, inputs_for(v), timeout_s)
        except DeviceError as exc:
            result.errors[f"run:{v}"] = f"{exc.kind}: {exc.reason}"
            continue
        if len(res.all_outputs) != output_counts[v]:
            result.errors[f"run:{v}"] = (f"failed: the device returned {len(res.all_outputs)} of "
                                         f"the model's {output_counts[v]} outputs")
            continue
        result.outputs[v] = res.all_outputs
        if res.delegation is not None:
            result.delegation[v] = res.delegation
    return result
