"""Per-layer quantization sensitivity of a Keras source model and the fix it proposes: which
layers to keep in float, built and measured beside full int8 (``qat-harness sensitivity``)."""
