"""DeviceSet: devices opened once, probed, the oracle given, everything closed."""
import pytest

from qat_harness.core.errors import UsageError
from qat_harness.devices import registry
from qat_harness.devices.base import Availability, DeviceOption, Role
from qat_harness.devices.device_set import DeviceSet
from qat_harness.devices.litert.cpu import NullDevice

CLOSED: list[str] = []


class CountingDevice(NullDevice):
    name = "counting"
    options = (DeviceOption("level", "a level", type=int, default=1),)

    def __init__(self, num_threads: int = 2, level: int = 1):
        super().__init__(num_threads)
        self.level = level

    def close(self) -> None:
        CLOSED.append(self.name)


class AbsentDevice(CountingDevice):
    name = "absent"
    options = ()

    def __init__(self, num_threads: int = 2):
        super().__init__(num_threads)

    def probe(self) -> Availability:
        return Availability(False, "no such board attached")


class CountingOracle(CountingDevice):
    name = "counting-oracle"
    role = Role.ORACLE
    options = ()

    def __init__(self, num_threads: int = 2):
        super().__init__(num_threads)


@pytest.fixture(autouse=True)
def test_devices():
    CLOSED.clear()
    for cls in (CountingDevice, AbsentDevice, CountingOracle):
        registry.register(cls)
    yield
    for cls in (CountingDevice, AbsentDevice, CountingOracle):
        registry.unregister(cls.name)


def test_each_device_is_created_once_with_its_own_options_and_closed_with_the_set():
    with DeviceSet.open(["counting", "null"], {"level": 3}) as devices:
        assert devices.names() == ["counting", "null"]
        assert devices["counting"].level == 3 and devices.options["null"] == {}
        assert devices["counting"] is devices["counting"]
    assert CLOSED == ["counting"]


def test_an_option_no_requested_device_takes_is_refused_in_one_line():
    with pytest.raises(UsageError, match="applies to none of the devices null"):
        DeviceSet.open(["null"], {"level": 3})


def test_an_unavailable_device_is_refused_and_nothing_stays_open():
    with pytest.raises(UsageError, match="'absent' was requested but is not available: no such board"):
        DeviceSet.open(["counting", "absent"])
    assert sorted(CLOSED) == ["absent", "counting"]


def test_without_require_available_an_unavailable_device_is_left_out_and_said():
    with DeviceSet.open(["counting", "absent"], require_available=False) as devices:
        assert devices.names() == ["counting"]
        assert devices.unavailable() == {"absent": "no such board attached"}


def test_the_requested_oracle_is_the_sets_own():
    with DeviceSet.open(["null", "counting-oracle"]) as devices:
        assert devices.oracle() is devices["counting-oracle"]


def test_an_oracle_made_on_demand_is_made_once_and_closed_with_the_set(monkeypatch):
    made = []

    def make_oracle():
        made.append(1)
        return CountingOracle()

    monkeypatch.setattr(registry, "oracle", make_oracle)
    with DeviceSet.open(["null"]) as devices:
        assert devices.oracle() is devices.oracle() and len(made) == 1
    assert CLOSED == ["counting-oracle"]


def test_the_set_is_a_mapping_of_the_usable_devices():
    with DeviceSet.open(["counting", "null"]) as devices:
        assert list(devices.keys()) == ["counting", "null"] and "null" in devices
        assert [d.name for d in devices.values()] == ["counting", "null"]
        assert devices.get("absent") is None
