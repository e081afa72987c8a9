"""A real pymodbus server for collector tests: Modbus TCP or RTU over TCP on 127.0.0.1 (port
0), or RTU on a serial port (one end of a pseudo-terminal pair from :func:`pty_pair`).

Each unit id gets its own register tables; addresses not given are not implemented, so the
server answers exception 2 (illegal data address) for them, like a real device. A unit's
``mode`` can be changed while the server runs to make it silent, busy or failing. The server
records the function code of every request frame it receives (Modbus TCP: raw bytes, before
decoding, which is what the read-only safety test asserts on; RTU frames have no length field,
so there it is the decoded request), and a timeline of ``events`` (connection made, request
decoded, response sent) with monotonic timestamps for pause and in-flight assertions.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal, cast

from pymodbus import FramerType
from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
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


@dataclass(frozen=True)
class Event:
    """One thing the server saw or did, at ``time.monotonic()`` seconds."""

    t: float
    what: Literal["connect", "request", "response"]
    unit: int = 0
    function_code: int = 0


class ModbusTestServer:
    """``async with ModbusTestServer({1: unit}) as srv: ... srv.port ...``

    ``framer=FramerType.RTU`` serves RTU frames over TCP (a transparent serial gateway);
    ``serial_port="/dev/pts/N"`` serves RTU on that serial port instead of TCP.
    """

    def __init__(
        self,
        units: Mapping[int, Unit],
        *,
        framer: FramerType = FramerType.SOCKET,
        serial_port: str | None = None,
        baudrate: int = 9600,
        parity: str = "N",
    ) -> None:
        self.units = dict(units)
        self.framer = FramerType.RTU if serial_port else framer
        self.serial_port = serial_port
        self.baudrate = baudrate
        self.parity = parity
        self.function_codes: list[int] = []  # every request frame received, in order
        self.events: list[Event] = []
        self.port = 0
        self.bind_port = 0  # 0: any free port; set to reopen a stopped server's port
        self._server: ModbusTcpServer | ModbusSerialServer | None = None

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
            if set_values is None and function_code in (3, 4):
                # Serve what the test put() since the server started (current_registers[0]
                # is start_address, per pymodbus' SimDevice action contract).
                live = unit.table("holding" if function_code == 3 else "input")
                for a in range(address, address + count):
                    if a in live and 0 <= a - start_address < len(registers):
                        registers[a - start_address] = int(live[a])
            return None

        return action

    def _trace_packet(self, sending: bool, data: bytes) -> bytes:
        if not sending and self.framer == FramerType.SOCKET:
            # MBAP header: tid(2) pid(2) length(2) unit(1), then the function code.
            i = 0
            while len(data) - i >= 8:
                self.function_codes.append(data[i + 7])
                i += 6 + int.from_bytes(data[i + 4 : i + 6], "big")
        return data

    def _trace_pdu(self, sending: bool, pdu: Any) -> Any:
        now = time.monotonic()
        fc = int(pdu.function_code)
        if sending:
            self.events.append(Event(now, "response", int(pdu.dev_id), fc))
        else:
            self.events.append(Event(now, "request", int(pdu.dev_id), fc))
            if self.framer != FramerType.SOCKET:
                self.function_codes.append(fc)
        return pdu

    def _trace_connect(self, connected: bool) -> None:
        if connected:
            self.events.append(Event(time.monotonic(), "connect"))

    def of(self, what: str) -> list[Event]:
        return [e for e in self.events if e.what == what]

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
        traces: dict[str, Any] = {
            "trace_packet": self._trace_packet,
            "trace_pdu": self._trace_pdu,
            "trace_connect": self._trace_connect,
        }
        if self.serial_port is not None:
            self._server = ModbusSerialServer(
                devices,
                framer=FramerType.RTU,
                port=self.serial_port,
                baudrate=self.baudrate,
                parity=self.parity,
                **traces,
            )
            await self._server.serve_forever(background=True)
            return self
        self._server = ModbusTcpServer(
            devices, framer=self.framer, address=("127.0.0.1", self.bind_port), **traces
        )
        await self._server.serve_forever(background=True)
        listener = cast(asyncio.Server, self._server.transport)
        self.port = int(listener.sockets[0].getsockname()[1])
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._server is not None:
            await self._server.shutdown()  # type: ignore[no-untyped-call]


@contextmanager
def pty_pair() -> Iterator[tuple[str, str]]:
    """Two connected pseudo-terminals (a null-modem cable), from socat: (server end, client end).

    A pty has no baud rate timing: bytes arrive as fast as socat relays them.
    """
    exe = shutil.which("socat")
    if exe is None:
        raise RuntimeError("socat is not installed: run `make system-deps` (Debian package socat)")
    proc = subprocess.Popen(
        [exe, "-d", "-d", "pty,raw,echo=0", "pty,raw,echo=0"],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        ends: list[str] = []
        while True:
            line = proc.stderr.readline()
            if not line:
                raise RuntimeError(f"socat exited ({proc.wait()}) before opening two ptys")
            m = re.search(r"PTY is (\S+)", line)
            if m:
                ends.append(m.group(1))
            if "starting data transfer loop" in line:
                break
        yield ends[0], ends[1]
    finally:
        proc.terminate()
        proc.wait(timeout=5)
        if proc.stderr is not None:
            proc.stderr.close()


def closed_port() -> int:
    """A loopback port with nothing listening (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_device(
    device_id: str,
    port: int | str,
    *,
    unit: int = 1,
    profile: str = "generic_power_meter_3p",
    kind: str = "power_meter",
    interval: float = 0.2,
    timeout: float = 0.1,
    retries: int = 0,
    host: str = "127.0.0.1",
    source_type: str = "modbus_tcp",
    source: Mapping[str, Any] | None = None,
    **extra: Any,
) -> Device:
    """A device config; ``port`` is a TCP port, or the serial device for ``modbus_rtu``.

    ``source`` adds or replaces source fields (pauses, overrides, read limits, line settings).
    """
    src: dict[str, Any] = {
        "type": source_type,
        "port": port,
        "unit_id": unit,
        "profile": profile,
        "timeout": timeout,
        "retries": retries,
    }
    if source_type != "modbus_rtu":
        src["host"] = host
    src.update(source or {})
    data: dict[str, Any] = {
        "id": device_id,
        "name": device_id,
        "kind": kind,
        "location": {"building": "A"},
        "source": src,
        "poll_interval": interval,
    }
    data.update(extra)
    return Device.model_validate(data)
