"""The three transports against real servers: Modbus TCP, RTU over TCP (a transparent serial
gateway: pymodbus' TCP server with its RTU framer) and RTU on a serial port (pymodbus' serial
server on one end of a socat pseudo-terminal pair, the collector on the other).

Server-side timelines (request decoded / response sent, monotonic clock) give the pauses on the
wire and show that a connection never has two requests in flight.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from contextlib import suppress
from typing import Any

import pytest
from pymodbus import FramerType
from pymodbus.framer.rtu import FramerRTU

from collector.codec import encode
from collector.modbus import ModbusCollector
from collector.modbus_client import ModbusClient, build_request
from collector.planner import device_reads
from collector.profile import load_profile
from collector.transport import Connection, ReadOnlyViolation, modbus_read
from config.models import Device
from tests.collector.modbus_server import ModbusTestServer, Unit, make_device, pty_pair
from tests.collector.test_modbus import ELEVATOR, POWER, WATER, Sink, by_metric, run, run_until

LOG = "collector.modbus"
PM = "generic_power_meter_3p"
HEALTH = {"device_up", "poll_latency", "consecutive_failures", "last_ok_age"}


@pytest.fixture
def ptys() -> Iterator[tuple[str, str]]:
    with pty_pair() as ends:
        yield ends


def _values(profile: str) -> dict[str, float]:
    return {PM: POWER, "elevator_gbt24476": ELEVATOR, "generic_water_meter": WATER}[profile]


def assert_values(got: dict[str, Any], profile: str) -> None:
    values = _values(profile)
    assert set(got) - HEALTH == set(values)
    for metric, value in values.items():
        assert got[metric].value == pytest.approx(value, rel=1e-6), metric
    assert got["device_up"].value == 1.0


def server_gaps(srv: ModbusTestServer) -> list[float]:
    """Seconds from each response the server sent to the next request it received."""
    gaps: list[float] = []
    last_response: float | None = None
    for e in srv.events:
        if e.what == "response":
            last_response = e.t
        elif e.what == "request" and last_response is not None:
            gaps.append(e.t - last_response)
            last_response = None
    return gaps


# -- RTU over TCP ------------------------------------------------------------------------------


def test_gateway_with_three_kinds_of_device_keeps_polling_while_one_unit_is_dead(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The issue's acceptance case, through an RTU-over-TCP gateway."""
    caplog.set_level(logging.INFO, logger=LOG)
    kinds = {
        3: (PM, "power_meter"),
        4: ("elevator_gbt24476", "elevator"),
        5: ("generic_water_meter", "water_meter"),
    }
    units = {u: Unit.from_profile(load_profile(p), _values(p)) for u, (p, _) in kinds.items()}
    dead = Unit.from_profile(load_profile(PM), POWER)
    dead.mode = "silent"
    units[6] = dead
    interval = 0.2

    async def main() -> None:
        async with ModbusTestServer(units, framer=FramerType.RTU) as srv:
            gw: dict[str, Any] = {"source_type": "modbus_rtu_over_tcp", "interval": interval}
            devices = [
                make_device(f"u{u}", srv.port, unit=u, profile=p, kind=k, timeout=1.0, **gw)
                for u, (p, k) in kinds.items()
            ]
            devices.append(make_device("dead", srv.port, unit=6, timeout=0.1, **gw))
            sink = Sink()
            c = ModbusCollector(devices, sink, site_id="s", max_backoff_s=0.4)
            took = await run_until(c, lambda: len(sink.of("dead", "device_up")) >= 3)

            first = sink.batches[0][0].time
            down = sink.of("dead", "device_up")
            assert all(r.value == 0.0 for r in down)
            assert (down[0].time - first).total_seconds() < 3 * interval
            assert "no response within 0.1 s" in (c.health["dead"].last_error or "")
            for u, (p, _) in kinds.items():
                polls = [b for b in sink.batches if b[0].device == f"u{u}"]
                # Never missed a poll: one per interval since the start, all up, all values.
                assert len(polls) >= int(took / interval) - 1
                for batch in polls:
                    assert_values(by_metric(batch), p)
                assert c.health[f"u{u}"].overruns == 0
            assert len(srv.of("connect")) == 1  # one connection for the four units
            assert set(srv.function_codes) == {3}

    run(main())
    downs = [r.getMessage() for r in caplog.records if "is down" in r.getMessage()]
    assert len(downs) == 1
    assert "dead (modbus_rtu_over_tcp 127.0.0.1:" in downs[0] and " unit 6)" in downs[0]


def test_late_answer_of_a_timed_out_unit_is_not_taken_for_the_next_units_answer() -> None:
    """RTU frames carry no transaction id: only the unit id tells a late answer apart.

    pymodbus' server stamps every answer with the newest request's unit id, so it cannot play
    a unit that answers late; this gateway is a raw TCP server speaking RTU frames. Unit 6
    answers after 150 ms (its timeout is 100 ms), unit 3 after 80 ms, with the same function
    and register count, so only the unit id differs.
    """
    water = load_profile("generic_water_meter")
    good = [int(w) for r in water.registers for w in encode(r, WATER[r.metric])]
    delays = {3: 0.08, 6: 0.15}

    async def answer(writer: asyncio.StreamWriter, request: bytes) -> None:
        unit, count = request[0], int.from_bytes(request[4:6], "big")
        await asyncio.sleep(delays[unit])
        words = good if unit == 3 else [0xDEAD] * count
        body = bytes([unit, 3, 2 * count]) + b"".join(w.to_bytes(2, "big") for w in words)
        writer.write(body + FramerRTU.compute_CRC(body).to_bytes(2, "big"))
        await writer.drain()

    tasks: set[asyncio.Task[None]] = set()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                task = asyncio.create_task(answer(writer, await reader.readexactly(8)))
                tasks.add(task)
                task.add_done_callback(tasks.discard)

    async def main() -> None:
        gateway = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = int(gateway.sockets[0].getsockname()[1])
        gw: dict[str, Any] = {
            "source_type": "modbus_rtu_over_tcp",
            "profile": water.name,
            "kind": "water_meter",
        }
        devices = [
            make_device("late", port, unit=6, timeout=0.1, **gw),
            make_device("ok", port, unit=3, timeout=0.5, **gw),
        ]
        c = ModbusCollector(devices, Sink(), site_id="s")
        try:
            for _ in range(3):
                assert by_metric(await c.poll_device("late"))["device_up"].value == 0.0
                ok = by_metric(await c.poll_device("ok"))
                assert ok["device_up"].value == 1.0
                assert ok["volume"].value == pytest.approx(WATER["volume"])
                assert ok["flow_rate"].value == pytest.approx(WATER["flow_rate"])
        finally:
            c.close()
            gateway.close()
            await gateway.wait_closed()
            for task in list(tasks):
                task.cancel()

    run(main())


# -- serial RTU through a pseudo-terminal pair ------------------------------------------------


def test_serial_bus_polls_its_units_over_one_port(
    ptys: tuple[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOG)
    server_end, client_end = ptys
    units = {
        1: Unit.from_profile(load_profile(PM), POWER),
        2: Unit.from_profile(load_profile("generic_water_meter"), WATER),
    }
    silent = Unit.from_profile(load_profile(PM), POWER)
    silent.mode = "silent"
    units[9] = silent

    async def main() -> None:
        async with ModbusTestServer(units, serial_port=server_end) as srv:
            bus: dict[str, Any] = {"source_type": "modbus_rtu", "timeout": 0.5}
            devices = [
                make_device("pm", client_end, unit=1, **bus),
                make_device(
                    "water",
                    client_end,
                    unit=2,
                    profile="generic_water_meter",
                    kind="water_meter",
                    **bus,
                ),
                make_device("gone", client_end, unit=9, **{**bus, "timeout": 0.1}),
            ]
            c = ModbusCollector(devices, Sink(), site_id="s")
            try:
                for _ in range(2):
                    assert_values(by_metric(await c.poll_device("pm")), PM)
                    assert by_metric(await c.poll_device("gone"))["device_up"].value == 0.0
                    water = by_metric(await c.poll_device("water"))
                    assert_values(water, "generic_water_meter")
            finally:
                c.close()
            assert set(srv.function_codes) == {3}
            # The RTU default pause (20 ms) holds on the bus, also after a unit that timed out.
            assert min(server_gaps(srv)) >= 0.02

    run(main())
    downs = [r.getMessage() for r in caplog.records if "is down" in r.getMessage()]
    assert downs == [
        f"device gone (modbus_rtu {client_end} 9600 8N1 unit 9) is down: "
        "no response within 0.1 s (1 attempt(s))"
    ]


def test_serial_port_that_cannot_be_opened_is_down_with_the_reason(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger=LOG)
    dev = make_device("m", "/dev/ttyUSB-facmon-absent", source_type="modbus_rtu")

    async def main() -> None:
        c = ModbusCollector([dev], Sink(), site_id="s")
        try:
            for _ in range(3):
                got = by_metric(await c.poll_device("m"))
                assert got["device_up"].value == 0.0
        finally:
            c.close()
        assert c.health["m"].last_error == (
            "cannot open serial port /dev/ttyUSB-facmon-absent: no such device"
        )
        assert c.health["m"].consecutive_failures == 3

    run(main())
    downs = [r.getMessage() for r in caplog.records if "is down" in r.getMessage()]
    assert len(downs) == 1 and "/dev/ttyUSB-facmon-absent" in downs[0]


# -- one connection, one request at a time, pauses -------------------------------------------


TRANSPORTS = ["modbus_tcp", "modbus_rtu_over_tcp", "modbus_rtu"]


async def _serve(
    transport: str, units: dict[int, Unit], ptys: tuple[str, str] | None
) -> tuple[ModbusTestServer, int | str]:
    if transport == "modbus_rtu":
        assert ptys is not None
        srv = ModbusTestServer(units, serial_port=ptys[0])
        await srv.__aenter__()
        return srv, ptys[1]
    framer = FramerType.RTU if transport == "modbus_rtu_over_tcp" else FramerType.SOCKET
    srv = ModbusTestServer(units, framer=framer)
    await srv.__aenter__()
    return srv, srv.port


@pytest.fixture
def maybe_ptys(request: pytest.FixtureRequest) -> Iterator[tuple[str, str] | None]:
    if request.node.callspec.params.get("transport") != "modbus_rtu":
        yield None
        return
    with pty_pair() as ends:
        yield ends


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_several_units_on_one_connection_never_have_two_requests_in_flight(
    transport: str, maybe_ptys: tuple[str, str] | None
) -> None:
    water = load_profile("generic_water_meter")
    units = {u: Unit.from_profile(water, WATER) for u in (1, 2, 3, 4)}
    delay = 0.02
    for u in units.values():
        u.mode, u.delay_s = "slow", delay

    async def main() -> None:
        srv, port = await _serve(transport, units, maybe_ptys)
        try:
            devices = [
                make_device(
                    f"w{u}",
                    port,
                    unit=u,
                    profile=water.name,
                    kind="water_meter",
                    timeout=1.0,
                    source_type=transport,
                    # Two requests per poll, so polls of different units could interleave.
                    source={"pause_between_requests": 0, "one_request_per_field": True},
                )
                for u in units
            ]
            c = ModbusCollector(devices, Sink(), site_id="s")
            try:
                for _ in range(3):
                    # All four units asked at once: their requests queue on the connection.
                    polls = await asyncio.gather(*(c.poll_device(d.id) for d in devices))
                    for got in polls:
                        assert_values(by_metric(got), water.name)
                    latencies = sorted(by_metric(got)["poll_latency"].value for got in polls)
                    assert latencies[-1] >= 4 * 2 * delay  # the last one waited for the others
            finally:
                c.close()
        finally:
            await srv.__aexit__(None, None, None)
        timeline = [e for e in srv.events if e.what != "connect"]
        assert len(timeline) == 3 * 4 * 2 * 2
        # Strictly: request, its response, request, its response, ...
        for req, resp in zip(timeline[0::2], timeline[1::2], strict=True):
            assert (req.what, resp.what) == ("request", "response"), timeline
            assert req.unit == resp.unit

    run(main())


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_pauses_are_kept_between_requests_and_after_connecting(
    transport: str, maybe_ptys: tuple[str, str] | None
) -> None:
    water = load_profile("generic_water_meter")
    units = {u: Unit.from_profile(water, WATER) for u in (1, 2, 3)}
    pauses = {1: 0.03, 2: 0.01, 3: 0.0}  # the largest on the connection applies
    after_connect = 0.15

    async def main() -> None:
        srv, port = await _serve(transport, units, maybe_ptys)
        try:
            devices = [
                make_device(
                    f"w{u}",
                    port,
                    unit=u,
                    profile=water.name,
                    kind="water_meter",
                    interval=0.1,
                    timeout=1.0,
                    source_type=transport,
                    source={
                        "pause_between_requests": pauses[u],
                        "pause_after_connect": after_connect if u == 2 else 0,
                    },
                )
                for u in units
            ]
            sink = Sink()
            c = ModbusCollector(devices, sink, site_id="s")
            loop = asyncio.get_running_loop()
            started = loop.time()
            await run_until(c, lambda: len(srv.of("request")) >= 15)
        finally:
            await srv.__aexit__(None, None, None)
        gaps = server_gaps(srv)
        assert len(gaps) >= 14
        assert min(gaps) >= 0.03, sorted(gaps)[:3]
        first_request = srv.of("request")[0].t
        if transport == "modbus_rtu":
            # The serial server "connects" when it opens its end; measure from the collector.
            assert first_request - started >= after_connect
        else:
            assert first_request - srv.of("connect")[0].t >= after_connect
        assert all(r.value == 1.0 for d in devices for r in sink.of(d.id, "device_up"))

    run(main())


def test_default_pause_is_20ms_for_rtu_and_none_for_modbus_tcp() -> None:
    tcp = make_device("a", 502).source
    gw = make_device("b", 4001, source_type="modbus_rtu_over_tcp").source
    serial = make_device("c", "/dev/ttyUSB0", source_type="modbus_rtu").source
    assert tcp.pause_between_requests.total_seconds() == 0.0
    assert gw.pause_between_requests.total_seconds() == 0.02
    assert serial.pause_between_requests.total_seconds() == 0.02
    assert {s.pause_after_connect.total_seconds() for s in (tcp, gw, serial)} == {0.0}


@pytest.mark.parametrize(
    ("second", "message"),
    [
        (
            {"source_type": "modbus_rtu", "source": {"baudrate": 19200}},
            "device 'b': /dev/ttyS7: modbus_rtu /dev/ttyS7 19200 8N1 unit 2 line settings "
            "19200 8N1 differ from 9600 8N1 of another device on the same serial port",
        ),
        (
            {"source_type": "modbus_rtu", "source": {"parity": "E"}},
            "device 'b': /dev/ttyS7: modbus_rtu /dev/ttyS7 9600 8E1 unit 2 line settings "
            "9600 8E1 differ from 9600 8N1 of another device on the same serial port",
        ),
    ],
)
def test_devices_that_cannot_share_a_serial_port_are_refused_at_startup(
    second: dict[str, Any], message: str
) -> None:
    a = make_device("a", "/dev/ttyS7", source_type="modbus_rtu")
    b = make_device("b", "/dev/ttyS7", unit=2, **second)
    with pytest.raises(ValueError) as info:
        ModbusCollector([a, b], Sink(), site_id="s")
    assert str(info.value) == message


def test_one_gateway_port_with_two_framings_is_refused_at_startup() -> None:
    a = make_device("a", 4001, host="192.0.2.30")
    b = make_device("b", 4001, host="192.0.2.30", unit=2, source_type="modbus_rtu_over_tcp")
    with pytest.raises(
        ValueError,
        match=r"device 'b': 192.0.2.30:4001: .* uses "
        r"modbus_rtu_over_tcp where another device on it uses modbus_tcp",
    ):
        ModbusCollector([a, b], Sink(), site_id="s")


# -- overrides and read limits ---------------------------------------------------------------


def test_word_order_override_fixes_a_meter_whose_firmware_sends_the_counter_low_word_first() -> (
    None
):
    pm = load_profile(PM)
    energy = pm.register("energy_import")
    as_profile = Unit.from_profile(pm, POWER)
    low_word_first = Unit.from_profile(pm, POWER)
    low_word_first.put(energy.model_copy(update={"word_order": "CDAB"}), POWER["energy_import"])

    async def main() -> None:
        units = {3: as_profile, 4: low_word_first}
        async with ModbusTestServer(units, framer=FramerType.RTU) as srv:
            gw: dict[str, Any] = {"source_type": "modbus_rtu_over_tcp", "timeout": 0.5}
            fix = {"overrides": {"energy_import": {"word_order": "CDAB"}}}
            devices = [
                make_device("m3", srv.port, unit=3, **gw),
                make_device("m4", srv.port, unit=4, **gw, source=fix),
                make_device("m4-unfixed", srv.port, unit=4, **gw),
            ]
            c = ModbusCollector(devices, Sink(), site_id="s")
            try:
                m3 = by_metric(await c.poll_device("m3"))
                m4 = by_metric(await c.poll_device("m4"))
                unfixed = by_metric(await c.poll_device("m4-unfixed"))
            finally:
                c.close()
            assert m3["energy_import"].value == pytest.approx(123456.78)
            assert m4["energy_import"].value == pytest.approx(123456.78)
            # 12345678 = 0x00BC614E sent as [0x614E, 0x00BC] and read big-endian.
            assert unfixed["energy_import"].value == pytest.approx(0x614E00BC * 0.01)
            # Only the overridden register changed.
            assert m4["voltage_a"].value == pytest.approx(POWER["voltage_a"], rel=1e-6)

    run(main())


def _meter(**source: Any) -> Device:
    return make_device("m", 502, source=source)


def _shape(device: Device) -> list[tuple[int, int, int]]:
    reads = device_reads(device.source, load_profile(device.source.profile))
    return [(r.function_code, r.address, r.count) for r in reads]


def test_read_limits_and_one_request_per_field_change_the_plan() -> None:
    assert _shape(_meter()) == [(3, 0, 32)]
    assert _shape(_meter(max_registers_per_read=16)) == [(3, 0, 16), (3, 16, 16)]
    assert _shape(_meter(max_gap=0)) == [(3, 0, 20), (3, 30, 2)]
    per_field = _shape(_meter(one_request_per_field=True))
    assert per_field == [(3, a, 2) for a in range(0, 20, 2)] + [(3, 30, 2)]
    # Overrides are applied before planning: a register moved away gets a read of its own.
    moved = _meter(overrides={"energy_import": {"address": 200}})
    assert _shape(moved) == [(3, 0, 20), (3, 200, 2)]


@pytest.mark.parametrize(
    ("source", "requests"),
    [({}, 1), ({"max_registers_per_read": 16}, 2), ({"one_request_per_field": True}, 11)],
)
def test_the_plan_is_what_goes_on_the_wire(source: dict[str, Any], requests: int) -> None:
    pm = load_profile(PM)

    async def main() -> None:
        unit = Unit.from_profile(pm, POWER)
        async with ModbusTestServer({1: unit}, framer=FramerType.RTU) as srv:
            dev = make_device(
                "m", srv.port, source_type="modbus_rtu_over_tcp", timeout=0.5, source=source
            )
            c = ModbusCollector([dev], Sink(), site_id="s")
            try:
                got = by_metric(await c.poll_device("m"))
            finally:
                c.close()
            assert_values(got, PM)
            assert len(srv.of("request")) == requests == len(c.reads_of("m"))

    run(main())


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_every_transport_refuses_to_send_anything_but_reads(
    transport: str, maybe_ptys: tuple[str, str] | None
) -> None:
    water = load_profile("generic_water_meter")

    async def main() -> None:
        srv, port = await _serve(transport, {1: Unit.from_profile(water, WATER)}, maybe_ptys)
        conn = Connection(make_device("w", port, source_type=transport, timeout=0.5).source)
        try:
            (read,) = device_reads(conn.source, water)
            assert len(await conn.read(read, 1, timeout=0.5, retries=0)) == 4
            # The one request function refuses anything else before a byte is sent ...
            for fc in (5, 6, 15, 16, 22, 23, 8, 43):
                with pytest.raises(ReadOnlyViolation):
                    await modbus_read(conn.client, fc, 0, 1, 1)
            client = conn.client
            if isinstance(client, ModbusClient):
                # ... facmon's own client (the TCP transports) has no way to send a write: no
                # write method, and its one frame builder refuses anything but a read ...
                assert not [a for a in dir(client) if "write" in a.lower()]
                for fc in (5, 6, 15, 16, 22, 23, 8, 43):
                    with pytest.raises(ReadOnlyViolation):
                        await client.read(fc, 0, 1, 1)
                    for tid in (None, 1):
                        with pytest.raises(ReadOnlyViolation):
                            build_request(fc, 0, 1, 1, tid)
            else:
                # ... and the guard on pymodbus' serial client refuses writes that bypass it.
                with pytest.raises(ReadOnlyViolation):
                    await client.write_register(0, 1, device_id=1)
                with pytest.raises(ReadOnlyViolation):
                    await client.write_registers(0, [1, 2], device_id=1)
            assert len(await conn.read(read, 1, timeout=0.5, retries=0)) == 4
        finally:
            conn.close()
            await srv.__aexit__(None, None, None)
        assert srv.function_codes == [3, 3]

    run(main())
