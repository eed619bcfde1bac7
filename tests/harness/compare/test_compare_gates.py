"""The noise-aware latency gate and what `compare` says about it, and the reports compare
refuses (another schema_version, malformed claims) with one line naming the file. The reports
are a real recorded one read through the codec, its latencies varied on the typed tree."""
import json
import re

import numpy as np
import pytest
import recorded_reports

from qat_harness import compare
from qat_harness.compare.gates import LatencyGate, LatencyRule, NightNoise, Outcome, judge_verdicts
from qat_harness.core.errors import UsageError
from qat_harness.record import codec
from qat_harness.results import Verdict
from qat_harness.writers import compare_text


def _night(median_ms: float, noise: float, seed: int, n: int = 300) -> list[float]:
    return recorded_reports.samples(median_ms, n=n, noise=noise, seed=seed)


def test_identical_nights_are_no_regression():
    night = _night(1.0, 0.05, 1)
    finding = LatencyGate().judge_samples(night, list(night))
    assert finding.outcome is Outcome.UNCHANGED and finding.ratio == pytest.approx(1.0)


def test_a_20_percent_slowdown_with_low_noise_is_a_regression_and_says_why():
    finding = LatencyGate(tolerance=0.10).judge_samples(_night(1.0, 0.03, 1), _night(1.2, 0.03, 2))
    assert finding.outcome is Outcome.REGRESSION and finding.rule is LatencyRule.INTERVAL
    assert finding.ci_low > 1.10
    text = finding.explain()
    assert text.startswith("median +2") and "95% CI [+" in text and "above the 10% tolerance" in text


def test_a_point_change_past_the_tolerance_inside_the_noise_is_not_a_regression():
    base, cur = _night(1.0, 0.6, 1, n=40), _night(1.0, 0.6, 2, n=40)
    cur = [t * 1.12 / (np.median(cur) / np.median(base)) for t in cur]   # point estimate exactly +12%
    finding = LatencyGate(tolerance=0.10).judge_samples(base, cur)
    assert finding.ratio == pytest.approx(1.12)
    assert finding.outcome is Outcome.WITHIN_NOISE
    assert "not significant" in finding.explain()


def test_without_raw_samples_the_point_estimate_decides_and_says_so():
    finding = LatencyGate().judge_medians(1.0, 1.5)
    assert finding.outcome is Outcome.REGRESSION and finding.rule is LatencyRule.POINT
    assert "+50%" in finding.explain() and "point estimate" in finding.explain()


def test_verdict_rule_as_before():
    assert judge_verdicts("PASS", "FAIL").outcome is Outcome.REGRESSION
    assert judge_verdicts("FAIL", "PASS").outcome is Outcome.IMPROVEMENT
    assert judge_verdicts("PASS", "SKIP").outcome is Outcome.UNCHANGED
    assert judge_verdicts("PASS", "absent").explain() == "claim no longer reported"


def test_compare_names_the_rule_of_each_regression():
    base = recorded_reports.night("2026-01-01T02:00:00+00:00", seed=1, noise=0.03)
    cur = recorded_reports.set_verdict(recorded_reports.night("2026-01-02T02:00:00+00:00", seed=2, noise=0.03,
                                                              int8_ms=0.6), "A1-accuracy", Verdict.FAIL)
    result = compare.compare(base, cur)
    # int8 slower and float not: the int8/float ratio of the night (robust to load) says so too
    assert {r.rule for r in result.regressions} == {"verdict", "latency bootstrap interval", "int8/float ratio"}
    text = compare_text.render(result)
    assert re.search(r"REGRESSION int8\.tflite cpu latency \[latency bootstrap interval\]: int8: median \+(19|20|21)%",
                     text), text
    assert "above the 10% tolerance" in text
    assert not compare.compare(base, recorded_reports.through_json(base)).regressions


def test_compare_says_what_changed_on_the_machine():
    base = recorded_reports.night("2026-01-01T02:00:00+00:00", seed=1, tensorflow="2.20.0")
    cur = recorded_reports.night("2026-01-02T02:00:00+00:00", seed=2, tensorflow="2.21.0", cpu="Other CPU")
    result = compare.compare(base, cur)
    assert "tensorflow 2.20.0 -> 2.21.0" in result.environment_changes
    assert "different CPUs" in compare_text.render(result)


def _write(tmp_path, data, name="report.json"):
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path


def _data() -> dict:
    return codec.to_json_data(recorded_reports.tiny())


def test_a_newer_schema_version_is_refused_in_one_line(tmp_path):
    data = _data()
    data["schema_version"] = 99
    with pytest.raises(UsageError) as exc:
        compare.compare_files(_write(tmp_path, data), recorded_reports.TINY)
    message = str(exc.value)
    assert "\n" not in message and "report.json" in message and "schema 99" in message


@pytest.mark.parametrize("break_it", [
    lambda d: d["claims"].append("not a claim"),
    lambda d: d["claims"][0].pop("verdict"),
    lambda d: d["claims"][0].update(verdict="MAYBE"),
    lambda d: d.update(claims={"C1": "PASS"}),
    lambda d: d["models"]["int8.tflite"]["devices"]["cpu"].update(latency_raw_ms={"float": "fast"}),
    lambda d: d["models"]["int8.tflite"].update(devices=["cpu"]),
    lambda d: d.update(schema_version="2"),
    lambda d: d.pop("tool"),
])
def test_malformed_reports_are_one_line_errors_naming_the_file(tmp_path, break_it):
    data = _data()
    break_it(data)
    bad = _write(tmp_path, data, "bad.json")
    with pytest.raises(UsageError) as exc:
        compare.compare_files(recorded_reports.TINY, bad)
    assert "bad.json" in str(exc.value) and "\n" not in str(exc.value)


def test_night_to_night_noise_from_history_widens_the_interval():
    base, cur = _night(1.0, 0.03, 1), _night(1.2, 0.03, 2)
    calm = NightNoise.from_medians([1.0, 1.01, 0.99, 1.0, 1.005, 0.995])
    swinging = NightNoise.from_medians([1.0, 1.2, 0.85, 1.15, 0.9, 1.25])
    assert LatencyGate().judge_samples(base, cur, calm).outcome is Outcome.REGRESSION
    finding = LatencyGate().judge_samples(base, cur, swinging)
    assert finding.outcome is Outcome.WITHIN_NOISE and finding.rule is LatencyRule.INTERVAL_WITH_HISTORY
    assert "night-to-night noise of 5 earlier night pairs" in finding.explain()
    too_short = NightNoise.from_medians([1.0, 1.3, 0.8])
    assert LatencyGate().judge_samples(base, cur, too_short).rule is LatencyRule.INTERVAL


def test_compare_learns_the_noise_from_the_history(tmp_path):
    from qat_harness import history
    from qat_harness.compare import night_facts

    db = tmp_path / "history.sqlite"
    paths = []
    for i, int8_ms in enumerate([0.5, 0.6, 0.42, 0.58, 0.45, 0.5, 0.6]):
        run = recorded_reports.night(f"2026-01-0{i + 1}T02:00:00+00:00", seed=i, noise=0.03, int8_ms=int8_ms)
        paths.append(tmp_path / f"night{i}.json")
        paths[-1].write_text(codec.dump(run))
        run_id = history.record(db, run, paths[-1])
    alone = compare.compare_files(paths[-2], paths[-1])
    assert any(r.rule == "latency bootstrap interval" for r in alone.regressions)
    with_history = compare.compare_files(paths[-2], paths[-1],
                                         earlier_medians=history.earlier_medians(db, run_id),
                                         earlier_speedups=night_facts.earlier_speedups(db, run_id))
    assert not [r for r in with_history.regressions if r.claim == "latency"]
    assert "night-to-night noise" in compare_text.render(with_history)
