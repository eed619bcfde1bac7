"""The test suite's Edge TPU simulator: the fake ``edgetpu_compiler`` and its helpers."""
