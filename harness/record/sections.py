"""Record: what each measuring stage found, put into the model's section of the report tree
(typed, as ``record.tree`` declares it), so that the stage's values are saved before the next."""
from __future__ import annotations

from qat_harness import inspection
from qat_harness.measure.files import InspectedFiles
from qat_harness.measure.latency import LatencyMeasurement
from qat_harness.measure.scheme import quantization_scheme
from qat_harness.preparation import PreparedModel, n_examples
from qat_harness.record import codec
from qat_harness.record.tree import (
    ArtifactsInfo,
    BuildRecord,
    DatasetInfo,
    DeviceSection,
    JsonObject,
    ModelSection,
    PtqChecks,
    TfliteSummary,
    WeightQuantization,
)
from qat_harness.variants import Variant


def record_preparation(section: ModelSection, m: PreparedModel) -> None:
    section.description, section.config = m.description, codec.structure(JsonObject, m.config)
    section.dataset = DatasetInfo(m.data.name, n_examples(m.data.x_eval), m.data.labels_meaningful, m.data_note,
                                  feeds=m.feeds or None)
    section.artifacts = ArtifactsInfo(m.folder, bool(m.from_cache) if m.folder is not None else None,
                                      dict(m.variants))
    if m.folder is not None:
        section.keras = codec.structure(BuildRecord, m.metrics)


def record_files(section: ModelSection, files: InspectedFiles) -> None:
    section.tflite = {v: codec.structure(TfliteSummary, i.to_dict()) for v, i in files.infos.items()}
    section.schemes = {v: quantization_scheme(i) for v, i in files.infos.items()}
    if files.facts is None or files.facts.variant not in files.infos:
        return
    section.quantization = {v: codec.structure(list[WeightQuantization], inspection.weight_granularity(i))
                            for v, i in files.infos.items() if v != Variant.FLOAT}
    ptq = files.infos.get(Variant.PTQ_INT8)
    if ptq is not None:
        section.ptq_checks = PtqChecks(inspection.full_integer_check(ptq), inspection.per_axis_check(ptq))


def record_latency(section: DeviceSection, measured: LatencyMeasurement) -> None:
    section.latency = measured.summaries
    section.latency_raw_ms = measured.bench.times_ms
    section.first_invoke_ms = measured.bench.first_invoke_ms
    section.bench_details = measured.details
    for v, delegation in measured.bench.delegation.items():
        if delegation is not None:
            section.delegation.setdefault(v, delegation)
    if measured.speedup is not None:
        section.speedup_qat_vs_float = measured.speedup
        section.speedup_ptq_vs_float = measured.ptq_speedup
