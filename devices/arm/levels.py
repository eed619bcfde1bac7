"""The ARM feature levels the ``arm-cpu-*`` devices emulate: which CPU QEMU presents
(``QEMU_CPU``, which sets the hardware capabilities XNNPACK reads to pick its int8 kernels) and
the ``/proc/cpuinfo`` the emulated process reads (the cpuinfo library parses it for the core's
identity: an x86 file makes LiteRT crash at interpreter creation, and the core named here is
the one whose tuned kernels XNNPACK picks).

- ``neon``: a Cortex-A53 (ARMv8.0, NEON only: int8 kernels widen to 16 bits), the little
  core of many phones;
- ``dotprod``: a Cortex-A76 (ARMv8.2 with SDOT/UDOT), the big core of most phones since 2019;
- ``i8mm``: QEMU's ``max`` CPU without SME (ARMv9 with I8MM's SMMLA, SVE2, BF16), presented as
  a Cortex-A710;
- ``sme``: the same with SME on. Never a default: QEMU 7.2 computes XNNPACK's SME kernels
  wrong (digits_cnn QAT int8 came out 218 steps off the reference kernels), so its results
  say something about the emulator, not about a phone. It exists to show that a level which
  disagrees with the others is caught (``consistency``).
"""
from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class FeatureLevel:
    name: str
    qemu_cpu: str          # QEMU_CPU: the emulated CPU model and its feature switches
    core: str              # the core /proc/cpuinfo names
    midr_part: int         # its MIDR part number (implementer 0x41, Arm)
    midr_variant: int
    midr_revision: int
    features: str          # the Features line of /proc/cpuinfo, as Linux prints it
    faithful: bool = True  # False: the emulator is known to compute this level wrong

    def cpuinfo(self, processors: int) -> str:
        """``/proc/cpuinfo`` as Linux on this core prints it, one block per processor."""
        block = ("processor\t: {n}\nBogoMIPS\t: 50.00\nFeatures\t: {features}\nCPU implementer\t: 0x41\n"
                 "CPU architecture: 8\nCPU variant\t: {variant:#x}\nCPU part\t: {part:#05x}\n"
                 "CPU revision\t: {revision}\n\n")
        return "".join(block.format(n=n, features=self.features, variant=self.midr_variant,
                                    part=self.midr_part, revision=self.midr_revision)
                       for n in range(max(1, processors)))


_V80 = "fp asimd evtstrm aes pmull sha1 sha2 crc32 cpuid"
_V82 = _V80 + " atomics fphp asimdhp asimdrdm lrcpc dcpop asimddp"
_V9 = (_V82 + " sha3 sm3 sm4 sha512 sve asimdfhm dit uscat ilrcpc flagm ssbs sb paca pacg dcpodp sve2 "
       "sveaes svepmull svebitperm svesha3 svesm4 flagm2 frint svei8mm svebf16 i8mm bf16 dgh bti")

LEVELS: dict[str, FeatureLevel] = {level.name: level for level in (
    FeatureLevel("neon", "cortex-a53", "Cortex-A53", 0xd03, 0x0, 4, _V80),
    FeatureLevel("dotprod", "cortex-a76", "Cortex-A76", 0xd0b, 0x4, 1, _V82),
    FeatureLevel("i8mm", "max,sme=off", "Cortex-A710", 0xd47, 0x2, 0, _V9),
    FeatureLevel("sme", "max", "Cortex-A710", 0xd47, 0x2, 0, _V9 + " sme", faithful=False),
)}
#: the levels a run gets by default: those QEMU computes right
DEFAULT_LEVELS = tuple(name for name, level in LEVELS.items() if level.faithful)
#: the device family's name; each level is the device ``arm-cpu-<level>``
FAMILY = "arm-cpu"


def device_name(level: str) -> str:
    return f"{FAMILY}-{level}"


def expand_family(names: list[str]) -> list[str]:
    """``arm-cpu`` in a device list stands for every default level, each its own device."""
    out: list[str] = []
    for name in names:
        out += [device_name(level) for level in DEFAULT_LEVELS] if name == FAMILY else [name]
    return list(dict.fromkeys(out))
