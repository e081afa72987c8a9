"""Smoke tests of the Modbus polling benchmark: its simulator, its schedule arithmetic, one run.

The simulator is the benchmark's own cheap server (a real TCP server in a child process), read
with a real pymodbus client; the collector run goes through the real outbox and DuckDB store.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Iterator
from datetime import timedelta

import pytest
from pymodbus.client import AsyncModbusTcpClient

from benchmarks.cheap_modbus_server import HOST, SimulatorProcess
from benchmarks.modbus_poll import PollLog, analyse_lateness, parse_args, run_collector


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorProcess]:
    with SimulatorProcess(devices=6, registers=64, units_per_port=4) as s:
        yield s


def test_simulator_serves_each_unit_its_registers(sim: SimulatorProcess) -> None:
    assert len(sim.ports) == 2
    port, unit = sim.address(5)  # second port, second unit

    async def read() -> tuple[list[int], int, int, int]:
        client = AsyncModbusTcpClient(HOST, port=port, timeout=1.0, retries=0)
        await client.connect()
        try:
            ok = await client.read_input_registers(2, count=4, device_id=unit)
            missing = await client.read_holding_registers(0, count=2, device_id=4)
            beyond = await client.read_holding_registers(62, count=4, device_id=unit)
            coils = await client.read_coils(0, count=1, device_id=unit)
        finally:
            client.close()
        return (
            list(ok.registers),
            missing.exception_code,
            beyond.exception_code,
            coils.exception_code,
        )

    before = sim.stats().requests
    words, missing, beyond, coils = asyncio.run(read())
    # Device 5 holds float32 100 + k + 5/1000 at registers 2k, 2k+1.
    values = struct.unpack(">2f", struct.pack(">4H", *words))
    assert values == pytest.approx((101.005, 102.005), abs=1e-4)
    assert (missing, beyond, coils) == (11, 2, 1)  # no such unit, past the image, not a read
    assert sim.stats().requests - before == 4


def test_lateness_follows_the_collectors_schedule() -> None:
    polls = PollLog()
    base = polls.clock()

    def poll(start: float, end: float) -> None:
        polls.polls.append(("d1", base + timedelta(seconds=start), polls.monotonic_of(base) + end))

    poll(0.0, 0.1)  # slot 0 on time
    poll(1.05, 1.1)  # slot 1, 50 ms late
    poll(2.0, 3.5)  # slot 2 on time, overruns: slot 3 is skipped
    poll(4.2, 4.3)  # slot 4, 200 ms late
    t0 = polls.monotonic_of(base)
    lateness, missed, durations = analyse_lateness(polls, 1.0, t0 - 0.5, t0 + 4.5)
    assert lateness == pytest.approx([0.0, 0.05, 0.0, 0.2], abs=2e-3)
    assert missed == 1
    # A second device that never polled misses all five slots of the window.
    assert analyse_lateness(polls, 1.0, t0 - 0.5, t0 + 4.5, devices=2)[1] == 1 + 5
    assert durations[2] == pytest.approx(1.5, abs=2e-3)


def test_collector_run_stores_every_sample(sim: SimulatorProcess) -> None:
    args = parse_args(["--devices", "6", "--interval", "0.5", "--warmup", "1", "--seconds", "2"])
    run = run_collector(sim, 6, args, "batched", args.seconds)
    assert run.requests >= 6 * 3  # one planned read per poll, 2 polls/s each
    assert run.registers_read == 60 * run.requests
    assert run.emitted > 0 and run.stored == run.emitted and run.all_stored
    assert run.wrong_values == 0
    assert run.down_polls == 0 and run.server_errors == 0
    assert run.lateness and max(run.lateness) < 0.25
