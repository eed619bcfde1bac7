from qat_harness.devices.base import DeviceOption, Role
from qat_harness.devices.litert.cpu import LiteRTDevice


class AcmeCpuDevice(LiteRTDevice):
    name = "acme-cpu"
    description = "ACME's CPU path (a third-party plug-in)"
    role = Role.HOST_CPU
    options = (DeviceOption("acme_level", "ACME tuning level", type=int, default=1),)

    def __init__(self, num_threads: int = 2, acme_level: int = 1):
        super().__init__(num_threads)
        self.acme_level = acme_level

    def describe(self) -> dict:
        return {**super().describe(), "acme_level": self.acme_level}
