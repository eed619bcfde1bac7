from qat_harness.core import keras2

keras2.enter()  # the benchmarks build small models in-process, with Keras 2
