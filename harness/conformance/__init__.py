"""The conformance tests, shipped inside the package so that they run on your model from any
folder::

    pytest --pyargs qat_harness.conformance --device=cpu --conformance-models my_int8.tflite=my_float.tflite

Each documented claim becomes a test per model (and per ``--device`` for the claims that
depend on the device); a claim that does not hold fails its test with the measured value and
the reason. Latency claims that FAIL are xfail unless ``--strict-perf`` (they measure the
hardware, not the model)."""
