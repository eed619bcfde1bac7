"""Fixtures of the simulated Android side, shared by the Android test modules
(``pytest_plugins = ["simulators.android_fixtures"]``): a fake benchmark_model binary, a
factory of fake adb servers, and one healthy simulated phone per module."""
from __future__ import annotations

from pathlib import Path

import pytest

from simulators.fake_adb import FakeAdbServer, FakeDevice, write_fake_benchmark_model


@pytest.fixture(scope="module")
def binary(tmp_path_factory) -> Path:
    return write_fake_benchmark_model(tmp_path_factory.mktemp("bm") / "benchmark_model")


@pytest.fixture
def fake_adb(tmp_path):
    """Start fake adb servers: ``fake_adb(FakeDevice(...), ...)``; all stopped at the end."""
    servers = []

    def start(*devices: FakeDevice) -> FakeAdbServer:
        server = FakeAdbServer(list(devices), tmp_path / f"adb{len(servers)}")
        server.start()
        servers.append(server)
        return server
    yield start
    for server in servers:
        server.stop()


@pytest.fixture(scope="module")
def phone(tmp_path_factory):
    """One healthy simulated phone shared by the tests that do not break it."""
    server = FakeAdbServer([FakeDevice()], tmp_path_factory.mktemp("phone"))
    server.start()
    yield server
    server.stop()
