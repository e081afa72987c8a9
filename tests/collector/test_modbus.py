"""ModbusCollector against real pymodbus TCP servers on 127.0.0.1."""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Callable, Coroutine, Sequence
from contextlib import suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from pymodbus.client import AsyncModbusTcpClient

from collector.modbus import (
    ModbusCollector,
    ReadOnlyViolation,
    modbus_read,
    read_only_pdu_guard,
)
from collector.profile import load_profile
from store.reading import Quality, Reading
from tests.collector.modbus_server import (
    ModbusTestServer,
    Mode,
    Unit,
    closed_port,
    make_device,
)

LOG = "collector.modbus"

POWER = {
    "voltage_a": 230.1,
    "voltage_b": 229.8,
    "voltage_c": 231.0,
    "current_a": 12.5,
    "current_b": 11.0,
    "current_c": 13.25,
    "active_power": 8.4,
    "reactive_power": 1.2,
    "power_factor": 0.98,
    "frequency": 50.0,
    "energy_import": 123456.78,
}
ELEVATOR = {
    "service_mode": 2,
    "running": 1,
    "direction": 2,
    "floor": -2,
    "door_zone": 1,
    "door_closed_locked": 1,
    "passenger_in_car": 0,
    "fault_code": 0,
    "entrapment": 0,
    "run_count": 1234567,
    "running_hours": 8765.4,
    "door_cycles": 2345678,
}
WATER = {"volume": 98765.432, "flow_rate": 3.5}


class Sink:
    """Collects what the collector emits, one batch per device poll."""

    def __init__(self) -> None:
        self.batches: list[list[Reading]] = []

    def __call__(self, readings: Sequence[Reading]) -> None:
        self.batches.append(list(readings))

    def of(self, device: str, metric: str) -> list[Reading]:
        return [r for b in self.batches for r in b if r.device == device and r.metric == metric]


def run(coro: Coroutine[Any, Any, None]) -> None:
    asyncio.run(coro)


async def run_until(
    collector: ModbusCollector, cond: Callable[[], bool], timeout: float = 3.0
) -> float:
    """Run the collector's schedule until ``cond`` holds; returns the seconds it took."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    task = asyncio.create_task(collector.run())
    try:
        while not cond():
            assert not task.done(), "collector stopped by itself"
            if loop.time() - start > timeout:
                raise AssertionError(f"condition not reached within {timeout} s")
            await asyncio.sleep(0.005)
        return loop.time() - start
    finally:
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task


def by_metric(readings: list[Reading]) -> dict[str, Reading]:
    out = {r.metric: r for r in readings}
    assert len(out) == len(readings), "a metric appears twice in one poll"
    return out


def test_one_poll_of_each_shipped_profile_gives_the_values_the_device_holds() -> None:
    profiles = {
        1: ("generic_power_meter_3p", "power_meter", POWER),
        2: ("elevator_gbt24476", "elevator", ELEVATOR),
        3: ("generic_water_meter", "water_meter", WATER),
    }
    units = {u: Unit.from_profile(load_profile(p), v) for u, (p, _, v) in profiles.items()}
    clock_time = datetime(2024, 5, 1, 8, 0, 0, 123456, tzinfo=UTC)

    async def main() -> None:
        async with ModbusTestServer(units) as srv:
            devices = [
                make_device(
                    f"dev{u}",
                    srv.port,
                    unit=u,
                    profile=p,
                    kind=k,
                    location={"building": "T1", "floor": "B1", "tenant": "acme"},
                    tags={"panel": "AP-1"},
                )
                for u, (p, k, _) in profiles.items()
            ]
            sink = Sink()
            c = ModbusCollector(devices, sink, site_id="riverside", clock=lambda: clock_time)
            try:
                for u, (p, k, values) in profiles.items():
                    got = by_metric(await c.poll_device(f"dev{u}"))
                    profile = load_profile(p)
                    assert set(got) == {r.metric for r in profile.registers} | {
                        "device_up",
                        "poll_latency",
                        "consecutive_failures",
                        "last_ok_age",
                    }
                    for reg in profile.registers:
                        r = got[reg.metric]
                        assert r.value == pytest.approx(values[reg.metric], rel=1e-6), reg.metric
                        assert r.unit == reg.unit
                        assert r.quality is Quality.GOOD
                    assert got["device_up"].value == 1.0
                    assert 0 < got["poll_latency"].value < 1.0
                    assert got["poll_latency"].unit == "s"
                    assert got["consecutive_failures"].value == 0.0
                    assert got["last_ok_age"].value == 0.0
                    for r in got.values():
                        # One timestamp per poll: the poll's start, truncated to the millisecond.
                        assert r.time == datetime(2024, 5, 1, 8, 0, 0, 123000, tzinfo=UTC)
                        assert r.device == f"dev{u}"
                        assert dict(r.tags) == {
                            "site": "riverside",
                            "building": "T1",
                            "floor": "B1",
                            "kind": k,
                            "tenant": "acme",
                            "panel": "AP-1",
                        }
                    h = c.health[f"dev{u}"]
                    assert h.up and h.consecutive_failures == 0 and h.last_ok == r.time
                assert len(sink.batches) == 3
                # One request per device: the planner merged each profile into one read.
                assert srv.function_codes == [3, 3, 3]
            finally:
                c.close()

    run(main())


def test_out_of_range_and_unknown_codes_are_flagged_and_nan_is_counted_not_stored() -> None:
    pm = load_profile("generic_power_meter_3p")
    el = load_profile("elevator_gbt24476")
    power = Unit.from_profile(pm, {**POWER, "frequency": 0.0, "power_factor": 1.5})
    power.put_words(pm.register("voltage_a"), [0x7FC0, 0x0000])  # float32 NaN
    lift = Unit.from_profile(el, {**ELEVATOR, "service_mode": 42})

    async def main() -> None:
        async with ModbusTestServer({1: power, 2: lift}) as srv:
            devices = [
                make_device("pm", srv.port, unit=1),
                make_device("lift", srv.port, unit=2, profile=el.name, kind="elevator"),
            ]
            c = ModbusCollector(devices, Sink(), site_id="s")
            try:
                got = by_metric(await c.poll_device("pm"))
                assert got["frequency"].quality is Quality.BAD  # below min 40 Hz
                assert got["frequency"].value == 0.0
                assert got["power_factor"].quality is Quality.BAD  # above max 1
                # No store can hold NaN: it is counted on the device's health, not emitted.
                assert "voltage_a" not in got
                assert c.health["pm"].invalid_values == 1
                assert got["voltage_b"].quality is Quality.GOOD
                lift_got = by_metric(await c.poll_device("lift"))
                assert lift_got["service_mode"].value == 42.0
                assert lift_got["service_mode"].quality is Quality.UNCERTAIN
                assert lift_got["floor"].value == -2.0
            finally:
                c.close()

    run(main())


def test_units_on_one_gateway_are_staggered_and_polled_on_their_interval() -> None:
    pm = load_profile("generic_power_meter_3p")
    units = {1: Unit.from_profile(pm, POWER), 2: Unit.from_profile(pm, POWER)}

    async def main() -> None:
        async with ModbusTestServer(units) as srv:
            devices = [make_device(f"d{u}", srv.port, unit=u, interval=0.1) for u in units]
            sink = Sink()
            c = ModbusCollector(devices, sink, site_id="s")
            await run_until(c, lambda: len(sink.batches) >= 6)
            order = [b[0].device for b in sink.batches[:6]]
            # d2 starts half an interval after d1, so the two alternate rather than collide.
            assert order == ["d1", "d2", "d1", "d2", "d1", "d2"]
            times = [r.time for r in sink.of("d1", "device_up")]
            gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(times)]
            assert all(0.08 <= g <= 0.15 for g in gaps), gaps

    run(main())


@pytest.mark.parametrize(
    ("mode", "reason"),
    [("silent", "no response within 0.1 s"), ("gateway_error", "exception 11")],
)
def test_dead_unit_goes_down_within_three_intervals_while_its_neighbour_keeps_polling(
    mode: Mode, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOG)
    pm = load_profile("generic_power_meter_3p")
    alive, dead = Unit.from_profile(pm, POWER), Unit.from_profile(pm, POWER)
    dead.mode = mode

    async def main() -> None:
        async with ModbusTestServer({1: alive, 2: dead}) as srv:
            devices = [
                # A generous timeout for the live unit: a loaded CI machine must not make it
                # look dead; the dead unit's short one keeps the test quick.
                make_device("alive", srv.port, unit=1, interval=0.2, timeout=1.0),
                make_device("dead", srv.port, unit=2, interval=0.2, timeout=0.1),
            ]
            sink = Sink()
            c = ModbusCollector(devices, sink, site_id="s", max_backoff_s=0.4)
            took = await run_until(c, lambda: len(sink.of("dead", "device_up")) >= 3)
            down = sink.of("dead", "device_up")
            assert down[0].value == 0.0
            assert all(r.value == 0.0 for r in down)  # emitted on every attempt while down
            assert [r.value for r in sink.of("dead", "consecutive_failures")] == [1.0, 2.0, 3.0]
            assert not sink.of("dead", "poll_latency")
            assert not sink.of("dead", "last_ok_age")  # never read: there is no last good read
            assert not sink.of("dead", "voltage_a")
            first_down = (down[0].time - sink.batches[0][0].time).total_seconds()
            assert first_down < 3 * 0.2
            # The neighbour kept its schedule (the dead unit costs only its own timeout).
            up = sink.of("alive", "device_up")
            assert all(r.value == 1.0 for r in up)
            assert len(up) >= int(took / 0.2) - 1
            h = c.health["dead"]
            assert not h.up and h.consecutive_failures == 3 and h.last_ok is None
            assert h.last_error and reason in h.last_error

            dead.mode = "ok"
            await run_until(c, lambda: c.health["dead"].up)
            back = by_metric(next(b for b in reversed(sink.batches) if b[0].device == "dead"))
            assert back["device_up"].value == 1.0
            assert back["voltage_a"].value == pytest.approx(230.1, rel=1e-6)

    run(main())
    downs = [r for r in caplog.records if "is down" in r.getMessage()]
    assert len(downs) == 1
    assert downs[0].levelno == logging.WARNING
    msg = downs[0].getMessage()
    assert "dead" in msg and "127.0.0.1" in msg and "unit 2" in msg and reason in msg
    backs = [r for r in caplog.records if "is back" in r.getMessage()]
    assert len(backs) == 1 and backs[0].levelno == logging.INFO
    assert "dead" in backs[0].getMessage() and " down" in backs[0].getMessage()


def test_host_with_nothing_listening_is_down_and_backs_off(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger=LOG)
    pm = load_profile("generic_power_meter_3p")

    async def main() -> None:
        async with ModbusTestServer({1: Unit.from_profile(pm, POWER)}) as srv:
            devices = [
                make_device("ok", srv.port, interval=0.1),
                make_device("gone", closed_port(), interval=0.1),
            ]
            sink = Sink()
            c = ModbusCollector(devices, sink, site_id="s", max_backoff_s=0.4)
            took = await run_until(c, lambda: len(sink.of("ok", "device_up")) >= 10)
            attempts = sink.of("gone", "device_up")
            assert attempts and all(r.value == 0.0 for r in attempts)
            # Backing off: 1, 2, 4, 4, ... intervals between attempts, not one per interval.
            assert len(attempts) <= 2 + took / 0.4
            assert c.health["gone"].last_error is not None
            assert "cannot connect" in c.health["gone"].last_error
            assert c.health["ok"].up

    run(main())
    downs = [r for r in caplog.records if "is down" in r.getMessage()]
    assert len(downs) == 1 and "gone" in downs[0].getMessage()


def test_unit_id_the_gateway_does_not_know_is_down() -> None:
    pm = load_profile("generic_power_meter_3p")

    async def main() -> None:
        async with ModbusTestServer({1: Unit.from_profile(pm, POWER)}) as srv:
            c = ModbusCollector([make_device("ghost", srv.port, unit=9)], Sink(), site_id="s")
            try:
                got = by_metric(await c.poll_device("ghost"))
                assert got["device_up"].value == 0.0
                assert set(got) == {"device_up", "consecutive_failures"}
                # pymodbus answers an unknown unit id with exception 4 (device failure).
                assert "exception 4" in (c.health["ghost"].last_error or "")
            finally:
                c.close()

    run(main())


@pytest.mark.parametrize(("retries", "up"), [(1, True), (0, False)])
def test_busy_answer_is_retried_within_the_retry_budget(retries: int, up: bool) -> None:
    pm = load_profile("generic_water_meter")
    unit = Unit.from_profile(pm, WATER)
    unit.busy_next = 1

    async def main() -> None:
        async with ModbusTestServer({1: unit}) as srv:
            dev = make_device("w", srv.port, profile=pm.name, kind="water_meter", retries=retries)
            c = ModbusCollector([dev], Sink(), site_id="s")
            try:
                got = by_metric(await c.poll_device("w"))
                assert got["device_up"].value == (1.0 if up else 0.0)
                if up:
                    assert got["volume"].value == pytest.approx(98765.432)
                    assert unit.requests == 2
                else:
                    assert "exception 6" in (c.health["w"].last_error or "")
            finally:
                c.close()

    run(main())


def _write_profile(tmp_path: Path, registers: list[dict[str, Any]]) -> str:
    path = tmp_path / "custom.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "name": "custom",
                "kind": "sensor",
                "defaults": {"table": "holding"},
                "registers": registers,
            }
        ),
        encoding="utf-8",
    )
    return str(path)


def test_register_the_device_does_not_have_is_logged_once_as_a_config_problem(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOG)
    profile_path = _write_profile(
        tmp_path,
        [
            {"metric": "temp", "address": 0, "type": "int16", "scale": 0.1, "unit": "C"},
            {"metric": "humidity", "address": 1, "type": "uint16", "scale": 0.1, "unit": "%"},
            {"metric": "co2", "address": 300, "type": "uint16", "unit": "ppm"},
        ],
    )
    prof = load_profile(profile_path)
    unit = Unit.from_profile(prof, {"temp": -5.5, "humidity": 40.0}, fill_gaps=False)

    async def main() -> None:
        async with ModbusTestServer({1: unit}) as srv:
            dev = make_device("s1", srv.port, profile=profile_path, kind="sensor")
            c = ModbusCollector([dev], Sink(), site_id="s")
            try:
                for _ in range(3):
                    got = by_metric(await c.poll_device("s1"))
                    assert got["temp"].value == pytest.approx(-5.5)
                    assert got["humidity"].value == pytest.approx(40.0)
                    assert "co2" not in got
                    assert got["device_up"].value == 1.0  # it answered: not an outage
            finally:
                c.close()

    run(main())
    problems = [r for r in caplog.records if "rejected" in r.getMessage()]
    assert len(problems) == 1
    msg = problems[0].getMessage()
    assert "s1" in msg and "address 300" in msg and "co2" in msg and "exception 2" in msg


def test_merged_read_over_unimplemented_gap_is_split_and_remembered(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOG)
    profile_path = _write_profile(
        tmp_path,
        [
            {"metric": "a", "address": 0, "type": "uint16"},
            {"metric": "b", "address": 1, "type": "uint16"},
            {"metric": "c", "address": 6, "type": "float32"},
        ],
    )
    prof = load_profile(profile_path)
    # Addresses 2..5 are not implemented: the planner's merged read 0..7 is refused.
    unit = Unit.from_profile(prof, {"a": 1, "b": 2, "c": 2.5}, fill_gaps=False)

    async def main() -> None:
        async with ModbusTestServer({1: unit}) as srv:
            dev = make_device("g", srv.port, profile=profile_path, kind="sensor")
            c = ModbusCollector([dev], Sink(), site_id="s")
            try:
                assert [(r.address, r.count) for r in c.reads_of("g")] == [(0, 8)]
                got = by_metric(await c.poll_device("g"))
                assert (got["a"].value, got["b"].value, got["c"].value) == (1.0, 2.0, 2.5)
                assert [(r.address, r.count) for r in c.reads_of("g")] == [(0, 2), (6, 2)]
                before = len(srv.function_codes)
                await c.poll_device("g")
                assert len(srv.function_codes) - before == 2  # no more rejected reads
            finally:
                c.close()

    run(main())
    assert len([r for r in caplog.records if "pieces" in r.getMessage()]) == 1


def test_collector_only_ever_sends_read_function_codes(tmp_path: Path) -> None:
    """Full poll cycle of all three shipped profiles plus one using all four tables."""
    profile_path = _write_profile(
        tmp_path,
        [
            {"metric": "pump_on", "address": 3, "type": "bit", "table": "coil"},
            {"metric": "alarm", "address": 7, "type": "bit", "table": "discrete"},
            {"metric": "level", "address": 0, "type": "float32", "table": "input", "unit": "m"},
            {"metric": "setpoint", "address": 0, "type": "uint16", "unit": "m"},
        ],
    )
    custom = load_profile(profile_path)
    units = {
        1: Unit.from_profile(load_profile("generic_power_meter_3p"), POWER),
        2: Unit.from_profile(load_profile("elevator_gbt24476"), ELEVATOR),
        3: Unit.from_profile(load_profile("generic_water_meter"), WATER),
        4: Unit.from_profile(custom, {"pump_on": 1, "alarm": 1, "level": 2.25, "setpoint": 3}),
    }

    async def main() -> None:
        async with ModbusTestServer(units) as srv:
            devices = [
                make_device("pm", srv.port, unit=1, interval=0.1),
                make_device(
                    "lift",
                    srv.port,
                    unit=2,
                    profile="elevator_gbt24476",
                    kind="elevator",
                    interval=0.1,
                ),
                make_device(
                    "water",
                    srv.port,
                    unit=3,
                    profile="generic_water_meter",
                    kind="water_meter",
                    interval=0.1,
                ),
                make_device(
                    "pump", srv.port, unit=4, profile=profile_path, kind="sensor", interval=0.1
                ),
            ]
            sink = Sink()
            c = ModbusCollector(devices, sink, site_id="s")
            await run_until(c, lambda: all(len(sink.of(d.id, "device_up")) >= 2 for d in devices))
            assert all(r.value == 1.0 for d in devices for r in sink.of(d.id, "device_up"))
            assert [r.value for r in sink.of("pump", "pump_on")][:1] == [1.0]
            assert [r.value for r in sink.of("pump", "alarm")][:1] == [1.0]
            assert sink.of("pump", "level")[0].value == 2.25
            assert srv.function_codes, "the server saw no requests"
            assert set(srv.function_codes) == {1, 2, 3, 4}

            # The one request function refuses anything else before a byte is sent ...
            seen = len(srv.function_codes)
            client = AsyncModbusTcpClient(
                "127.0.0.1", port=srv.port, timeout=0.5, retries=0, trace_pdu=read_only_pdu_guard
            )
            await client.connect()
            try:
                for fc in (5, 6, 15, 16, 22, 23, 8, 43):
                    with pytest.raises(ReadOnlyViolation):
                        await modbus_read(client, fc, 0, 1, 1)
                # ... and the guard on the client refuses writes that bypass it.
                with pytest.raises(ReadOnlyViolation):
                    await client.write_register(0, 1, device_id=1)
                with pytest.raises(ReadOnlyViolation):
                    await client.write_coil(3, False, device_id=1)
                assert (await modbus_read(client, 3, 0, 1, 4)) == [3]
            finally:
                client.close()
            assert srv.function_codes[seen:] == [3]

    run(main())


def test_poll_that_overruns_its_interval_is_counted_and_not_stacked() -> None:
    pm = load_profile("generic_water_meter")
    unit = Unit.from_profile(pm, WATER)
    unit.mode, unit.delay_s = "slow", 0.21

    async def main() -> None:
        async with ModbusTestServer({1: unit}) as srv:
            dev = make_device(
                "w", srv.port, profile=pm.name, kind="water_meter", interval=0.1, timeout=1.0
            )
            sink = Sink()
            c = ModbusCollector([dev], sink, site_id="s")
            await run_until(c, lambda: len(sink.batches) >= 3)
            h = c.health["w"]
            assert h.up and h.overruns == len(sink.batches) == h.polls
            times = [r.time for r in sink.of("w", "device_up")]
            gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(times)]
            # Missed slots are skipped: the next poll waits for the next whole interval
            # (0.3 s) rather than firing as soon as the slow one returns (0.21 s).
            assert all(g >= 0.27 for g in gaps), gaps

    run(main())


def test_failing_sink_is_logged_once_and_polling_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger=LOG)
    pm = load_profile("generic_water_meter")
    calls: list[int] = []

    def sink(readings: Sequence[Reading]) -> None:
        calls.append(len(readings))
        if len(calls) <= 3:
            raise OSError("disk full")

    async def main() -> None:
        async with ModbusTestServer({1: Unit.from_profile(pm, WATER)}) as srv:
            dev = make_device("w", srv.port, profile=pm.name, kind="water_meter", interval=0.1)
            c = ModbusCollector([dev], sink, site_id="s")
            await run_until(c, lambda: len(calls) >= 5)

    run(main())
    assert len([r for r in caplog.records if "sink failed" in r.getMessage()]) == 1
    assert len([r for r in caplog.records if "sink works again" in r.getMessage()]) == 1


def test_device_with_unknown_profile_fails_at_startup_naming_the_device() -> None:
    dev = make_device("m1", 502, profile="no_such_profile")
    with pytest.raises(ValueError, match=r"m1.*no_such_profile"):
        ModbusCollector([dev], Sink(), site_id="s")


def test_duplicate_device_ids_are_refused() -> None:
    devs = [make_device("m1", 502), make_device("m1", 503)]
    with pytest.raises(ValueError, match="m1"):
        ModbusCollector(devs, Sink(), site_id="s")


def test_gateway_restart_is_an_outage_and_the_connection_is_reopened(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger=LOG)
    pm = load_profile("generic_water_meter")

    async def main() -> None:
        first = ModbusTestServer({1: Unit.from_profile(pm, WATER)})
        async with first:
            port = first.port
            dev = make_device("w", port, profile=pm.name, kind="water_meter")
            c = ModbusCollector([dev], Sink(), site_id="s")
            assert by_metric(await c.poll_device("w"))["device_up"].value == 1.0
        # The gateway is gone (its server closed the connection and stopped listening).
        try:
            assert by_metric(await c.poll_device("w"))["device_up"].value == 0.0
            second = ModbusTestServer({1: Unit.from_profile(pm, {**WATER, "volume": 5.0})})
            second.bind_port = port
            async with second:
                got = by_metric(await c.poll_device("w"))
                assert got["device_up"].value == 1.0
                assert got["volume"].value == pytest.approx(5.0)
        finally:
            c.close()

    run(main())
    assert len([r for r in caplog.records if "is down" in r.getMessage()]) == 1
    assert len([r for r in caplog.records if "is back" in r.getMessage()]) == 1


def test_garbage_answers_make_only_that_device_fail() -> None:
    """A gateway answering every read with one register too few, next to a healthy one.

    pymodbus' server cannot be made to send malformed frames, so this gateway is a raw TCP
    server speaking just enough Modbus TCP to answer with well-framed garbage.
    """
    pm = load_profile("generic_water_meter")

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                head = await reader.readexactly(7)
                body = await reader.readexactly(int.from_bytes(head[4:6], "big") - 1)
                count = int.from_bytes(body[3:5], "big")
                data = b"\x12\x34" * (count - 1)
                pdu = bytes([body[0], len(data)]) + data
                writer.write(head[:4] + (len(pdu) + 1).to_bytes(2, "big") + head[6:7] + pdu)
                await writer.drain()

    async def main() -> None:
        garbage = await asyncio.start_server(handle, "127.0.0.1", 0)
        gport = int(garbage.sockets[0].getsockname()[1])
        try:
            async with ModbusTestServer({1: Unit.from_profile(pm, WATER)}) as srv:
                devices = [
                    make_device("bad", gport, profile=pm.name, kind="water_meter"),
                    make_device("good", srv.port, profile=pm.name, kind="water_meter"),
                ]
                c = ModbusCollector(devices, Sink(), site_id="s")
                try:
                    bad = by_metric(await c.poll_device("bad"))
                    good = by_metric(await c.poll_device("good"))
                finally:
                    c.close()
                assert bad["device_up"].value == 0.0
                assert set(bad) == {"device_up", "consecutive_failures"}
                assert "asked for 4" in (c.health["bad"].last_error or "")
                assert good["device_up"].value == 1.0
                assert good["flow_rate"].value == 3.5
        finally:
            garbage.close()
            await garbage.wait_closed()

    run(main())


def test_a_counter_read_that_drops_to_zero_is_flagged_and_the_next_good_read_is_not() -> None:
    pm = load_profile("generic_power_meter_3p")
    unit = Unit.from_profile(pm, POWER)
    energy = pm.register("energy_import")

    async def main() -> None:
        async with ModbusTestServer({1: unit}) as srv:
            c = ModbusCollector([make_device("pm", srv.port, unit=1)], Sink(), site_id="s")
            try:
                seen = []
                for value in (123456.78, 0.0, 123456.80):
                    unit.put(energy, value)
                    got = by_metric(await c.poll_device("pm"))["energy_import"]
                    seen.append((round(got.value, 2), got.quality))
                    await asyncio.sleep(0.002)  # distinct poll timestamps
                assert seen == [
                    (123456.78, Quality.GOOD),
                    (0.0, Quality.UNCERTAIN),  # a read glitch: stored, but flagged
                    (123456.8, Quality.GOOD),
                ]
            finally:
                c.close()

    run(main())
