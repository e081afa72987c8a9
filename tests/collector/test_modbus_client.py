"""facmon's own Modbus client (collector.modbus_client) against real pymodbus servers on
127.0.0.1 (port 0): Modbus TCP, and RTU over TCP (pymodbus' TCP server with its RTU framer, a
transparent serial gateway). Results are compared with what pymodbus' own client reads from the
same server, so bits and registers come out "as pymodbus did".
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from pymodbus import FramerType
from pymodbus.client import AsyncModbusTcpClient
from pymodbus.framer.rtu import FramerRTU

from collector.modbus_client import (
    ModbusClient,
    ModbusExceptionResponse,
    ReadOnlyViolation,
    Unavailable,
    build_request,
    crc16,
    decode_answer,
)
from collector.planner import Read
from collector.transport import Connection, modbus_read
from tests.collector.modbus_server import ModbusTestServer, Unit, closed_port, make_device
from tests.collector.test_modbus import run

FRAMINGS = ["tcp", "rtu"]


@pytest.fixture(autouse=True, params=["asyncio", "uvloop"])
def event_loop_kind(request: pytest.FixtureRequest) -> Iterator[str]:
    """Every test on both loops: facmon runs on uvloop, whose transports and timer handles
    are not asyncio's classes."""
    if request.param == "uvloop":
        uvloop = pytest.importorskip("uvloop")
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    try:
        yield request.param
    finally:
        asyncio.set_event_loop_policy(None)


def _framer(framing: str) -> FramerType:
    return FramerType.RTU if framing == "rtu" else FramerType.SOCKET


def _unit(seed: int) -> Unit:
    """All four tables, values that differ per unit: a mix-up between units shows."""
    u = Unit()
    for a in range(20):
        u.holding[a] = (seed * 1000 + a * 7) & 0xFFFF
        u.input[a] = (seed * 3000 + 0xF000 + a) & 0xFFFF
    for a in range(24):
        u.coil[a] = (a * seed) % 3 == 0
        u.discrete[a] = (a + seed) % 5 < 2
    return u


def _client(srv: ModbusTestServer, framing: str, timeout: float = 0.5) -> ModbusClient:
    return ModbusClient("127.0.0.1", srv.port, rtu=framing == "rtu", timeout=timeout)


async def _wait_for(cond: Callable[[], bool], timeout: float = 2.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not cond():
        assert loop.time() < end, "condition not reached"
        await asyncio.sleep(0.005)


def _drop_connections(srv: ModbusTestServer) -> None:
    """The server closes every client connection it has (and keeps listening)."""
    server: Any = srv._server
    for handler in list(server.active_connections.values()):
        handler.close()


@asynccontextmanager
async def _server_in_thread(
    units: dict[int, Unit], framer: FramerType
) -> AsyncIterator[ModbusTestServer]:
    """A ModbusTestServer running on its own event loop in another thread: it keeps serving
    while the test blocks the client's loop."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    srv = ModbusTestServer(units, framer=framer)
    try:
        await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(srv.__aenter__(), loop))
        try:
            yield srv
        finally:
            await asyncio.wrap_future(
                asyncio.run_coroutine_threadsafe(srv.__aexit__(None, None, None), loop)
            )
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()


# -- frames, without a server ----------------------------------------------------------------


def test_request_frames_are_what_pymodbus_sends_and_only_reads_can_be_built() -> None:
    assert build_request(3, 0x10, 60, 7, 0x1234) == bytes.fromhex("1234 0000 0006 07 03 0010 003c")
    rtu = build_request(4, 100, 2, 3, None)
    body = bytes.fromhex("03 04 0064 0002")
    assert rtu == body + FramerRTU.compute_CRC(body).to_bytes(2, "big")
    assert crc16(rtu) == 0  # a whole frame with its CRC checks to 0
    rng = random.Random(7)
    for n in range(300):  # the byte-wise (short) and two-bytes-per-step (long) paths
        data = rng.randbytes(n)
        theirs = FramerRTU.compute_CRC(data).to_bytes(2, "big")
        assert crc16(data).to_bytes(2, "little") == theirs, n
    for fc in (5, 6, 15, 16, 22, 23, 8, 43, 0, 0x83):
        for tid in (None, 1):
            with pytest.raises(ReadOnlyViolation):
                build_request(fc, 0, 1, 1, tid)
    for fc, count in ((3, 0), (3, 126), (1, 2001)):
        with pytest.raises(ValueError):
            build_request(fc, 0, count, 1, 1)
    assert not [a for a in dir(ModbusClient) if "write" in a.lower()]


@pytest.mark.parametrize(
    ("pdu", "fc", "count", "message"),
    [
        (bytes.fromhex("03 04 0001 0002"), 3, 4, "response has 2 registers, asked for 4"),
        (bytes.fromhex("03 04 0001 0002 0003"), 3, 2, "byte count 4 with 6 data bytes"),
        (bytes.fromhex("04 04 0001 0002"), 3, 2, "answer with function 4 to a function 3"),
        (bytes.fromhex("01 01 ff"), 1, 9, "short response: 8 of 9 bits"),
        (bytes.fromhex("03"), 3, 1, r"malformed answer: 1 byte\(s\)"),
    ],
)
def test_answers_that_do_not_fit_the_request_are_unavailable(
    pdu: bytes, fc: int, count: int, message: str
) -> None:
    with pytest.raises(Unavailable, match=message):
        decode_answer(pdu, fc, 0, count)


def test_decoding() -> None:
    assert decode_answer(bytes.fromhex("03 04 0001 fffe"), 3, 0, 2) == [1, 0xFFFE]
    assert decode_answer(bytes.fromhex("02 02 05 01"), 2, 0, 10) == [
        True, False, True, False, False, False, False, False, True, False,
    ]  # fmt: skip
    with pytest.raises(ModbusExceptionResponse) as info:
        decode_answer(bytes.fromhex("83 02"), 3, 40, 2)
    assert (info.value.code, info.value.function_code, info.value.address) == (2, 3, 40)


# -- against pymodbus servers ----------------------------------------------------------------


@pytest.mark.parametrize("framing", FRAMINGS)
def test_all_four_read_functions_give_what_pymodbus_reads(framing: str) -> None:
    units = {1: _unit(1), 2: _unit(2)}

    async def main() -> None:
        async with ModbusTestServer(units, framer=_framer(framing)) as srv:
            ours = _client(srv, framing)
            theirs = AsyncModbusTcpClient(
                "127.0.0.1", port=srv.port, framer=_framer(framing), timeout=0.5, retries=0
            )
            assert await ours.connect() and await theirs.connect()
            try:
                for unit in units:
                    for fc, address, count in ((1, 0, 21), (2, 3, 17), (3, 0, 20), (4, 5, 10)):
                        got = await modbus_read(ours, fc, address, count, unit)
                        assert got == await modbus_read(theirs, fc, address, count, unit)
                        assert len(got) == count
                    assert await ours.read(3, 2, 3, unit) == [
                        units[unit].holding[a] for a in (2, 3, 4)
                    ]
                    assert await ours.read(4, 0, 2, unit) == [units[unit].input[a] for a in (0, 1)]
            finally:
                ours.close()
                theirs.close()
            assert set(srv.function_codes) == {1, 2, 3, 4}
            assert ours.ignored_answers == 0

    run(main())


@pytest.mark.parametrize("framing", FRAMINGS)
def test_exception_answers_carry_their_code(framing: str) -> None:
    failing = _unit(2)
    failing.mode = "gateway_error"

    async def main() -> None:
        async with ModbusTestServer({1: _unit(1), 2: failing}, framer=_framer(framing)) as srv:
            client = _client(srv, framing)
            assert await client.connect()
            try:
                cases = [(1, 3, 500, 2), (2, 3, 0, 11), (9, 4, 0, 4)]  # unit, fc, address, code
                for unit, fc, address, code in cases:
                    with pytest.raises(ModbusExceptionResponse) as info:
                        await client.read(fc, address, 2, unit)
                    exc = info.value
                    assert (exc.code, exc.function_code, exc.address, exc.count) == (
                        code, fc, address, 2,
                    )  # fmt: skip
                # The connection is still good after exceptions.
                assert await client.read(3, 0, 2, 1) == [1000, 1007]
            finally:
                client.close()

    run(main())


@pytest.mark.parametrize("framing", FRAMINGS)
def test_a_unit_that_never_answers_times_out_after_every_retry(framing: str) -> None:
    silent = _unit(2)
    silent.mode = "silent"

    async def main() -> None:
        async with ModbusTestServer({1: _unit(1), 2: silent}, framer=_framer(framing)) as srv:
            client = _client(srv, framing, timeout=0.1)
            client.retries = 2
            assert await client.connect()
            loop = asyncio.get_running_loop()
            try:
                started = loop.time()
                message = r"^no response within 0\.1 s \(3 attempt\(s\)\)$"
                with pytest.raises(Unavailable, match=message):
                    await client.read(3, 0, 4, 2)
                # uvloop's clock has millisecond steps: 0.3 s can read as 0.299.
                assert loop.time() - started >= 0.3 - 0.002
                assert silent.requests == 3  # each retry went out again
                client.retries = 0
                assert await client.read(3, 0, 2, 1) == [1000, 1007]  # the others still answer
            finally:
                client.close()

    run(main())


def test_a_shorter_timeout_after_a_longer_one_applies_and_a_longer_one_is_waited_for() -> None:
    """The client's one timer per connection is moved, not re-created, between requests."""
    silent, slow = _unit(2), _unit(3)
    silent.mode = "silent"
    slow.mode, slow.delay_s = "slow", 0.15

    async def main() -> None:
        async with ModbusTestServer({1: _unit(1), 2: silent, 3: slow}) as srv:
            client = _client(srv, "tcp", timeout=5.0)
            assert await client.connect()
            loop = asyncio.get_running_loop()
            try:
                assert await client.read(3, 0, 2, 1) == [1000, 1007]  # timer set for +5 s
                client.timeout = 0.1
                started = loop.time()
                with pytest.raises(Unavailable, match=r"no response within 0\.1 s"):
                    await client.read(3, 0, 2, 2)
                assert loop.time() - started < 1.0
                assert await client.read(3, 0, 2, 1) == [1000, 1007]  # timer set for +0.1 s
                client.timeout = 0.5
                assert await client.read(3, 0, 2, 3) == [3000, 3007]  # answers after 0.15 s
            finally:
                client.close()

    run(main())


@pytest.mark.parametrize("framing", FRAMINGS)
def test_late_answer_after_a_timeout_is_not_taken_for_the_next_answer(framing: str) -> None:
    """Unit 1 answers after 0.3 s, its timeout is 0.1 s. The client's loop is then busy (the
    server runs in another thread) while that late answer arrives, so it is read only once the
    next request, to unit 2, is out: Modbus TCP drops it by its transaction id, RTU over TCP by
    its unit id. (pymodbus' server stamps an answer with the newest request's transaction and
    unit id, so the late answer must leave before the next request reaches it.)"""
    slow = _unit(1)
    slow.mode, slow.delay_s = "slow", 0.3

    async def main() -> None:
        async with _server_in_thread({1: slow, 2: _unit(2)}, _framer(framing)) as srv:
            client = _client(srv, framing, timeout=0.1)
            assert await client.connect()
            try:
                with pytest.raises(Unavailable, match=r"no response within 0\.1 s"):
                    await client.read(3, 0, 4, 1)
                time.sleep(0.4)  # the client's loop is busy on purpose
                client.timeout = 1.0
                assert await client.read(3, 0, 4, 2) == [2000, 2007, 2014, 2021]
                assert client.ignored_answers == 1
            finally:
                client.close()
            events = [(e.what, e.unit) for e in srv.events if e.what != "connect"]
            assert events == [("request", 1), ("response", 1), ("request", 2), ("response", 2)]

    run(main())


@pytest.mark.parametrize("framing", FRAMINGS)
def test_server_closing_the_connection_is_noticed_and_the_next_read_reconnects(
    framing: str,
) -> None:
    silent = _unit(2)
    silent.mode = "silent"

    async def main() -> None:
        async with ModbusTestServer({1: _unit(1), 2: silent}, framer=_framer(framing)) as srv:
            client = _client(srv, framing, timeout=5.0)
            assert await client.connect()
            try:
                assert await client.read(3, 0, 2, 1) == [1000, 1007]
                # Closed while a request waits: it fails at once, not after its 5 s timeout.
                pending = asyncio.ensure_future(client.read(3, 0, 2, 2))
                await _wait_for(lambda: silent.requests == 1)
                _drop_connections(srv)
                with pytest.raises(Unavailable, match=r"connection to 127\.0\.0\.1:\d+ lost"):
                    await asyncio.wait_for(pending, 1.0)
                assert not client.connected
                with pytest.raises(Unavailable, match="lost"):
                    await client.read(3, 0, 2, 1)
                assert await client.connect()
                assert await client.read(3, 0, 2, 1) == [1000, 1007]
            finally:
                client.close()

            # Through the collector's Connection, the next read reconnects by itself.
            kind = "modbus_rtu_over_tcp" if framing == "rtu" else "modbus_tcp"
            conn = Connection(make_device("m", srv.port, source_type=kind).source)
            read = Read(table="holding", address=0, count=2, registers=())
            try:
                assert await conn.read(read, 1, timeout=0.5, retries=0) == [1000, 1007]
                _drop_connections(srv)
                await _wait_for(lambda: not conn.client.connected)
                assert await conn.read(read, 1, timeout=0.5, retries=0) == [1000, 1007]
            finally:
                conn.close()
            assert len(srv.of("connect")) == 4

    run(main())


def test_nothing_listening_cannot_connect() -> None:
    async def main() -> None:
        client = ModbusClient("127.0.0.1", closed_port(), timeout=0.5)
        assert not await client.connect()
        assert not client.connected
        with pytest.raises(Unavailable, match="lost"):
            await client.read(3, 0, 1, 1)

    run(main())


@pytest.mark.parametrize("framing", FRAMINGS)
def test_several_units_behind_one_connection(framing: str) -> None:
    units = {u: _unit(u) for u in (1, 2, 3, 17, 247)}

    async def main() -> None:
        async with ModbusTestServer(units, framer=_framer(framing)) as srv:
            client = _client(srv, framing)
            assert await client.connect()
            try:
                for _ in range(3):
                    for u, unit in units.items():
                        assert await client.read(3, 0, 20, u) == [
                            unit.holding[a] for a in range(20)
                        ]
                        assert await client.read(1, 0, 24, u) == [unit.coil[a] for a in range(24)]
            finally:
                client.close()
            assert len(srv.of("connect")) == 1
            assert [e.unit for e in srv.of("request")] == [
                u for _ in range(3) for u in units for _ in (1, 3)
            ]

    run(main())


@pytest.mark.parametrize("framing", FRAMINGS)
def test_a_second_request_while_one_waits_is_refused_and_the_first_is_unharmed(
    framing: str,
) -> None:
    slow = _unit(1)
    slow.mode, slow.delay_s = "slow", 0.1

    async def main() -> None:
        async with ModbusTestServer({1: slow}, framer=_framer(framing)) as srv:
            client = _client(srv, framing)
            assert await client.connect()
            try:
                first = asyncio.ensure_future(client.read(3, 0, 2, 1))
                await _wait_for(lambda: slow.requests == 1)
                with pytest.raises(RuntimeError, match="already waiting"):
                    await client.read(3, 0, 2, 1)
                assert await first == [1000, 1007]
            finally:
                client.close()

    run(main())
