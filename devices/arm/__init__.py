"""LiteRT's aarch64 kernels under QEMU user-mode emulation: the ``arm-cpu-*`` devices (``device``)."""
