"""A real pymodbus TCP server on 127.0.0.1 (port 0) for collector tests.

Each unit id gets its own register tables; addresses not given are not implemented, so the
server answers exception 2 (illegal data address) for them, like a real device. A unit's
``mode`` can be changed while the server runs to make it silent, busy or failing. The server
records the function code of every request frame it receives (raw bytes, before decoding),
which is what the read-only safety test asserts on.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, cast

from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from collector.codec import encode
from collector.profile import Profile, Register
from config.models import Device

Mode = Literal["ok", "slow", "silent", "gateway_error"]

# pymodbus needs at least one entry per table; park it where no profile looks.
_PARKED = 65535


@dataclass
class Unit:
    """Register contents and behaviour of one unit id behind the server."""

    holding: dict[int, int] = field(default_factory=dict)
    input: dict[int, int] = field(default_factory=dict)
    coil: dict[int, bool] = field(default_factory=dict)
    discrete: dict[int, bool] = field(default_factory=dict)
    # ok: answer; slow: answer correctly after `delay_s`; silent: never answer (a dead unit
    # behind a gateway that passes the silence on); gateway_error: exception 11 at once, what
    # a gateway says when the unit behind it is dead.
    mode: Mode = "ok"
    delay_s: float = 0.2
    busy_next: int = 0  # answer this many next requests with exception 6 (busy)
    requests: int = 0

    def table(self, name: str) -> dict[int, Any]:
        tables: dict[str, dict[int, Any]] = {
            "holding": self.holding,
            "input": self.input,
            "coil": self.coil,
            "discrete": self.discrete,
        }
        return tables[name]

    def put(self, register: Register, value: float) -> None:
        """Store a value the way the device would (via the codec's encoder)."""
        self.put_words(register, encode(register, value))

    def put_words(self, register: Register, words: Iterable[int] | Iterable[bool]) -> None:
        t = self.table(register.table)
        for i, w in enumerate(words):
            t[register.address + i] = w

    def fill_gaps(self) -> Unit:
        """Implement every address between a table's first and last as 0 / False."""
        for name in ("holding", "input", "coil", "discrete"):
            t = self.table(name)
            if t:
                blank = name in ("holding", "input") and 0
                for a in range(min(t), max(t)):
                    t.setdefault(a, blank)
        return self

    @classmethod
    def from_profile(
        cls, profile: Profile, values: Mapping[str, float], *, fill_gaps: bool = True
    ) -> Unit:
        """A unit holding ``values`` (by metric); by default gaps between them read as 0."""
        unit = cls()
        for reg in profile.registers:
            if reg.metric in values:
                unit.put(reg, values[reg.metric])
        return unit.fill_gaps() if fill_gaps else unit


def _runs(table: Mapping[int, Any]) -> list[tuple[int, list[Any]]]:
    runs: list[tuple[int, list[Any]]] = []
    for addr in sorted(table):
        if runs and runs[-1][0] + len(runs[-1][1]) == addr:
            runs[-1][1].append(table[addr])
        else:
            runs.append((addr, [table[addr]]))
    return runs


def _block(table: Mapping[int, Any], bits: bool) -> list[SimData]:
    dtype = DataType.BITS if bits else DataType.REGISTERS
    runs = _runs(table) or [(_PARKED, [False if bits else 0])]
    return [
        SimData(
            address=a,
            values=[bool(v) for v in vs] if bits else [int(v) for v in vs],
            datatype=dtype,
        )
        for a, vs in runs
    ]


class ModbusTestServer:
    """``async with ModbusTestServer({1: unit}) as srv: ... srv.port ...``"""

    def __init__(self, units: Mapping[int, Unit]) -> None:
        self.units = dict(units)
        self.function_codes: list[int] = []  # every request frame received, in order
        self.port = 0
        self.bind_port = 0  # 0: any free port; set to reopen a stopped server's port
        self._server: ModbusTcpServer | None = None

    def _action(self, unit: Unit) -> Any:
        async def action(
            function_code: int,
            start_address: int,
            address: int,
            count: int,
            registers: list[int],
            set_values: list[int] | list[bool] | None,
        ) -> ExcCodes | None:
            unit.requests += 1
            if unit.mode == "slow":
                await asyncio.sleep(unit.delay_s)
            if unit.mode == "silent":
                # Never answer: a late answer would be mis-addressed anyway, as pymodbus' server
                # stamps a reply with the transaction id of the newest request on the connection.
                await asyncio.Event().wait()
            if unit.mode == "gateway_error":
                return ExcCodes.GATEWAY_NO_RESPONSE
            if unit.busy_next > 0:
                unit.busy_next -= 1
                return ExcCodes.DEVICE_BUSY
            return None

        return action

    def _trace_packet(self, sending: bool, data: bytes) -> bytes:
        if not sending:
            # MBAP header: tid(2) pid(2) length(2) unit(1), then the function code.
            i = 0
            while len(data) - i >= 8:
                self.function_codes.append(data[i + 7])
                i += 6 + int.from_bytes(data[i + 4 : i + 6], "big")
        return data

    async def __aenter__(self) -> ModbusTestServer:
        devices = [
            SimDevice(
                id=uid,
                simdata=(
                    _block(u.coil, True),
                    _block(u.discrete, True),
                    _block(u.holding, False),
                    _block(u.input, False),
                ),
                action=self._action(u),
            )
            for uid, u in self.units.items()
        ]
        self._server = ModbusTcpServer(
            devices, address=("127.0.0.1", self.bind_port), trace_packet=self._trace_packet
        )
        await self._server.serve_forever(background=True)
        listener = cast(asyncio.Server, self._server.transport)
        self.port = int(listener.sockets[0].getsockname()[1])
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._server is not None:
            await self._server.shutdown()  # type: ignore[no-untyped-call]


def closed_port() -> int:
    """A loopback port with nothing listening (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_device(
    device_id: str,
    port: int,
    *,
    unit: int = 1,
    profile: str = "generic_power_meter_3p",
    kind: str = "power_meter",
    interval: float = 0.2,
    timeout: float = 0.1,
    retries: int = 0,
    host: str = "127.0.0.1",
    **extra: Any,
) -> Device:
    data: dict[str, Any] = {
        "id": device_id,
        "name": device_id,
        "kind": kind,
        "location": {"building": "A"},
        "source": {
            "type": "modbus_tcp",
            "host": host,
            "port": port,
            "unit_id": unit,
            "profile": profile,
            "timeout": timeout,
            "retries": retries,
        },
        "poll_interval": interval,
    }
    data.update(extra)
    return Device.model_validate(data)
