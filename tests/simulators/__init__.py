"""Simulators of the test suite (fake adb server and phones, fake Edge TPU tools); never used by
the product."""
