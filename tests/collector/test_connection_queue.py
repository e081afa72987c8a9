"""The connection's request queue: a poll that gives up leaves no request behind, closing
fails what waits, answers come back to the poll that asked (real pymodbus server)."""

from __future__ import annotations

import asyncio

import pytest

from collector.planner import device_reads
from collector.profile import load_profile
from collector.transport import Connection, Unavailable
from tests.collector.modbus_server import ModbusTestServer, Unit, make_device
from tests.collector.test_modbus import WATER, run


def test_cancelled_poll_sends_nothing_and_close_fails_the_waiting() -> None:
    water = load_profile("generic_water_meter")
    units = {u: Unit.from_profile(water, {**WATER, "flow_rate": float(u)}) for u in (1, 2, 3)}
    units[1].mode, units[1].delay_s = "slow", 0.2

    async def main() -> None:
        async with ModbusTestServer(units) as srv:
            conn = Connection(make_device("w", srv.port, timeout=1.0).source)
            (read,) = device_reads(conn.source, water)
            try:
                first = asyncio.create_task(conn.read(read, 1, 1.0, 0))
                second = asyncio.create_task(conn.read(read, 2, 1.0, 0))
                third = asyncio.create_task(conn.read(read, 3, 1.0, 0))
                await asyncio.sleep(0.05)  # unit 1 is answering slowly; 2 and 3 wait
                second.cancel()
                words1, words3 = await asyncio.gather(first, third)
                assert words1 != words3  # each poll got its own unit's answer
                assert [e.unit for e in srv.of("request")] == [1, 3]
                waiting = asyncio.create_task(conn.read(read, 1, 1.0, 0))
                await asyncio.sleep(0.05)  # in flight at unit 1 when the connection closes
            finally:
                conn.close()
            with pytest.raises(Unavailable):
                await waiting

    run(main())
