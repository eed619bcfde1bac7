"""Measure: what a run observes of a model on a device, as typed values and never verdicts
(the claims in ``qat_harness.claims`` judge them)."""
