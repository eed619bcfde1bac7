"""The model-coverage claims, drawn from the layer matrix (``qat-harness layers``): M1 the Keras
model kinds, M2 the allow-listed layers, M4 concat, M5 RNNs (M3 is in ``structure``)."""
from __future__ import annotations

from qat_harness.claims.base import ANY_DEVICE, Claim, Scope
from qat_harness.claims.layer_matrix import LayerMatrix, MatrixDevice, ProbeOutcome
from qat_harness.claims.structure import BatchNormFolding
from qat_harness.results import ClaimResult, Verdict

PASS, WARN, FAIL, SKIP, ERROR = Verdict.PASS, Verdict.WARN, Verdict.FAIL, Verdict.SKIP, Verdict.ERROR


class _MatrixClaim(Claim):
    scopes = (Scope.LAYER_MATRIX,)

    @classmethod
    def _per_device(cls, matrix: LayerMatrix, no_probe: str, judge_device) -> list[ClaimResult]:
        """One verdict per device from every probe's end-to-end result on it (``judge_device``:
        {probe: (verdict, 'stage: reason', stage)} -> (verdict, measured, reason)); a SKIP for an
        unavailable device, and one SKIP when the run had no probe of this claim."""
        probes = matrix.bearing_on(cls.tag())
        if not probes:
            return [cls.matrix_result(ANY_DEVICE, SKIP, None, no_probe)]
        out = []
        for device in _devices(matrix):
            if device.unavailable:
                out.append(cls.matrix_result(device.name, SKIP, None, device.unavailable))
                continue
            verdict, measured, reason = judge_device({p.name: end_to_end(p, _on(device)) for p in probes})
            out.append(cls.matrix_result(device.name, verdict, measured, reason, device.simulated))
        return out


class KerasApi(_MatrixClaim):
    id = "M1-api"
    text = "Keras Sequential and Functional models only; subclassed models not supported."
    expected = ("Sequential and Functional models quantize; a subclassed model gets a clear "
                "'unsupported' verdict, not a crash")

    @classmethod
    def judge(cls, matrix: LayerMatrix) -> ClaimResult:
        probes = {p.name: p for p in matrix.bearing_on(cls.tag())}
        if not probes:
            return cls.matrix_result(ANY_DEVICE, SKIP, None, "no model-kind probes in this run")
        measured = {n: _verdict_of(p, "qat") for n, p in probes.items()}
        parts, verdict = [], PASS
        for name in ("sequential_model", "functional_model"):
            if name in probes:
                v, where, _ = end_to_end(probes[name], None)
                if v in (FAIL, ERROR):
                    verdict = Verdict.worst([verdict, v])
                    parts.append(f"{name} fails ({where})")
                else:
                    parts.append(f"{name} quantizes and converts")
        sub = probes.get("subclassed_model")
        if sub:
            q = sub.stages.get("qat")
            if q and q.verdict is FAIL:
                parts.append(f"subclassed refused cleanly ({q.reason})")
            elif q and q.verdict is ERROR:
                verdict = Verdict.worst([verdict, ERROR])
                parts.append(f"subclassed crashed the harness stage ({q.reason})")
            else:
                verdict = Verdict.worst([verdict, WARN])
                parts.append(f"subclassed was NOT refused ({_verdict_of(sub, 'qat')}): the documentation "
                             "says unsupported")
        nested = probes.get("nested_model")
        if nested:
            q = nested.stages.get("qat")
            parts.append(f"nested model (the guide is silent): qat {_verdict_of(nested, 'qat')} "
                         f"({q.reason if q else ''})")
        return cls.matrix_result(ANY_DEVICE, verdict, measured, "; ".join(parts))


class AllowListedLayers(_MatrixClaim):
    id = "M2-layers"
    text = "Models that use the allow-listed layers are supported."
    expected = "every allow-listed layer passes QAT, conversion, full-int8, runs and agrees"
    # A probe's numeric stage, in steps of the int8 output scale (one step = 1/256 of the
    # output range). XNNPACK and the reference kernels may round a requantization differently:
    # one step apart is the same answer.
    ORACLE_PASS_STEPS = 1
    ORACLE_WARN_STEPS = 2
    # The QAT Keras model simulates int8 in float (fake quantization); the converter then rounds
    # biases to int32 and multipliers to fixed point, so a step or two apart is agreement.
    # Beyond 8 steps (3% of the output range) the int8 model computes something else.
    KERAS_PASS_STEPS = 2
    KERAS_WARN_STEPS = 8

    @classmethod
    def thresholds(cls) -> dict[str, int]:
        """As layers.json and layers.md state them."""
        return {"oracle_pass_steps": cls.ORACLE_PASS_STEPS, "oracle_warn_steps": cls.ORACLE_WARN_STEPS,
                "keras_pass_steps": cls.KERAS_PASS_STEPS, "keras_warn_steps": cls.KERAS_WARN_STEPS}

    @classmethod
    def judge(cls, matrix: LayerMatrix) -> list[ClaimResult]:
        return cls._per_device(matrix, "no allow-listed probes in this run", cls._on_device)

    @staticmethod
    def _on_device(results: dict[str, tuple[Verdict, str, str]]) -> tuple[Verdict, dict, str]:
        n_pass = sum(1 for r in results.values() if r[0] is PASS)
        bad = {n: r for n, r in results.items() if r[0] is not PASS}
        reason = f"{n_pass}/{len(results)} allow-listed probes pass every stage"
        if bad:
            reason += "; " + _list_bad(bad)
        measured = {"passing": n_pass, "total": len(results), "not_passing": {n: r[0].value for n, r in bad.items()}}
        return Verdict.worst(r[0] for r in results.values()), measured, reason


class Concat(_MatrixClaim):
    id = "M4-concat"
    text = "Concat works in limited cases."
    expected = "concat works in (at least) the basic case; the limits are reported"
    BASIC_CASE = "concat_channels"

    @classmethod
    def judge(cls, matrix: LayerMatrix) -> list[ClaimResult]:
        return cls._per_device(matrix, "no concat probes in this run", cls._on_device)

    @classmethod
    def _on_device(cls, results: dict[str, tuple[Verdict, str, str]]) -> tuple[Verdict, dict, str]:
        basic = results.get(cls.BASIC_CASE)
        failing = {n: r for n, r in results.items() if r[0] is not PASS}
        measured = {n: r[0].value for n, r in results.items()}
        if basic is not None and basic[0] in (FAIL, ERROR):
            return basic[0], measured, f"even the basic channel concat does not work: {basic[1]}"
        if not failing:
            return PASS, measured, f"concat works in all {len(results)} tested cases"
        verdict = WARN if basic is not None else Verdict.worst(r[0] for r in failing.values())
        return verdict, measured, (f"{len(results) - len(failing)}/{len(results)} concat cases work; limited: "
                                   + _list_bad(failing))


class Rnn(_MatrixClaim):
    id = "M5-rnn"
    text = "RNN/LSTM are not yet covered."
    expected = "RNN/LSTM not covered: refused cleanly (no crash, no silent float model)"

    @classmethod
    def judge(cls, matrix: LayerMatrix) -> ClaimResult:
        probes = matrix.bearing_on(cls.tag())
        if not probes:
            return cls.matrix_result(ANY_DEVICE, SKIP, None, "no RNN probes in this run")
        measured, parts, verdict = {}, [], PASS
        for p in probes:
            v, where, _ = end_to_end(p, None)
            first = p.first_failure
            measured[p.name] = f"{first} {p.stages[first].verdict.value}" if first else "works"
            if v is ERROR:
                verdict = Verdict.worst([verdict, ERROR])
                parts.append(f"{p.name} crashed ({where})")
            elif v is FAIL:
                parts.append(f"{p.name} refused at {where}")
            else:
                verdict = Verdict.worst([verdict, WARN])
                parts.append(f"{p.name} goes through QAT, conversion and full-int8: the documentation "
                             "(not covered) is more pessimistic than measured")
        return cls.matrix_result(ANY_DEVICE, verdict, measured, "; ".join(parts))


def judge_layer_matrix(matrix: LayerMatrix) -> list[ClaimResult]:
    """M1-M5 drawn from one layer matrix, in CLAIMS.md order."""
    return [KerasApi.judge(matrix), *AllowListedLayers.judge(matrix), BatchNormFolding.judge_matrix(matrix),
            *Concat.judge(matrix), Rnn.judge(matrix)]


def end_to_end(probe: ProbeOutcome, device: str | None) -> tuple[Verdict, str, str]:
    """A probe's overall verdict on a device (or on the stages before devices): the worst
    stage, with 'delegated' counted as at most WARN (partial delegation is speed, not
    support). Returns (verdict, 'stage: reason', stage)."""
    keys = ["qat", "convert", "int8", "bn_fold"]
    if device:
        keys += [f"{device}:runs", f"{device}:numeric"]
    worst, where, key = PASS, "", ""
    for k in keys:
        cell = probe.stages.get(k)
        if not cell:
            continue
        v = cell.verdict
        if v is SKIP and k in ("qat", "convert"):
            v = FAIL
        if v is SKIP:
            continue
        if v.severity > worst.severity:
            worst, where, key = v, f"{k}: {cell.reason}", k
    if device:
        d = probe.stages.get(f"{device}:delegated")
        if d and d.verdict in (WARN, FAIL) and worst is PASS:
            worst, where, key = WARN, f"{device}:delegated: {d.reason}", f"{device}:delegated"
    return worst, where, key


def _list_bad(bad: dict[str, tuple[Verdict, str, str]]) -> str:
    """'FAIL: a (int8: why); ERROR: ...; WARN: b (cpu:delegated), c (cpu:numeric)': worst
    first, with the reason for FAIL and ERROR and only the stage for WARN."""
    parts = []
    for verdict in (ERROR, FAIL, WARN):
        items = [(n, where, key) for n, (v, where, key) in bad.items() if v is verdict]
        if not items:
            continue
        if verdict is WARN:
            text = ", ".join(f"{n} ({key})" for n, _, key in items)
        else:
            text = "; ".join(f"{n} ({where[:160]})" for n, where, _ in items)
        parts.append(f"{verdict.value}: {text}")
    return "; ".join(parts)


def _devices(matrix: LayerMatrix) -> list[MatrixDevice]:
    return list(matrix.devices) or [MatrixDevice(ANY_DEVICE)]


def _on(device: MatrixDevice) -> str | None:
    return None if device.name == ANY_DEVICE else device.name


def _verdict_of(probe: ProbeOutcome, stage: str) -> str | None:
    cell = probe.stages.get(stage)
    return cell.verdict.value if cell else None
