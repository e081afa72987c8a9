"""Modbus transports and the one read-only path every request takes.

Three ways to reach a device, one per source type:

- ``modbus_tcp``: Modbus TCP (MBAP framing) to a device or a Modbus TCP gateway;
- ``modbus_rtu_over_tcp``: RTU frames (unit id + PDU + CRC) over a TCP socket, what
  serial-to-Ethernet gateways in transparent mode expect;
- ``modbus_rtu``: RTU frames on a local serial port (RS-485 adapter).

Every unit behind one gateway (host, port, framing) or on one serial port shares one
:class:`Connection`, which keeps at most one request in flight (RS-485 is half duplex and
gateways serialise anyway), keeps the configured silence between the end of an answer and the
next request, and waits after (re)connecting.

The two TCP transports use facmon's own client (:mod:`collector.modbus_client`): pymodbus'
per-request machinery was most of the collector's CPU. Serial ports keep pymodbus'
``AsyncModbusSerialClient``.

Safety: facmon never writes to building equipment. Every request goes through
:func:`modbus_read`, which allows only the read function codes 1-4. Behind it, the native
client has no write method and its one frame builder refuses anything but a read; on the
serial pymodbus client a guard on the outgoing PDUs (:func:`read_only_pdu_guard`) refuses
anything else even if code elsewhere bypassed :func:`modbus_read`.
"""

from __future__ import annotations

import asyncio
import os
import struct
from collections import deque
from dataclasses import dataclass
from typing import Any

from pymodbus import FramerType
from pymodbus.client import AsyncModbusSerialClient, ModbusBaseClient
from pymodbus.exceptions import ModbusIOException
from pymodbus.pdu.register_message import (
    ReadHoldingRegistersResponse,
    ReadInputRegistersResponse,
)

from collector.modbus_client import (
    READ_FUNCTION_CODES,
    ModbusClient,
    ModbusExceptionResponse,
    ReadOnlyViolation,
    Unavailable,
    check_read_only,
)
from collector.planner import Read
from config.models import ModbusRtuSource, ModbusSource, MqttSource

__all__ = [
    "READ_FUNCTION_CODES",
    "Connection",
    "ModbusExceptionResponse",
    "ReadOnlyViolation",
    "Unavailable",
    "bus_conflict",
    "check_read_only",
    "connection_key",
    "describe_source",
    "modbus_read",
    "read_only_pdu_guard",
]

BUSY = 6
_BUSY_PAUSE_S = 0.05


def read_only_pdu_guard(sending: bool, pdu: Any) -> Any:
    """pymodbus ``trace_pdu`` hook refusing to send any PDU but a read.

    The second line of defence: the client calls it for every PDU it frames, so a write cannot
    leave even if code calls ``client.write_*`` directly instead of :func:`modbus_read`.
    """
    if sending:
        check_read_only(int(pdu.function_code))
    return pdu


async def modbus_read(
    client: ModbusClient | ModbusBaseClient,
    function_code: int,
    address: int,
    count: int,
    device_id: int,
) -> list[int] | list[bool]:
    """The one function through which facmon sends Modbus requests; reads only.

    Works with facmon's :class:`ModbusClient` (Modbus TCP, RTU over TCP) and any pymodbus
    async client (serial). Returns ``count`` registers (function codes 3, 4) or bits (1, 2).
    Raises ReadOnlyViolation for any other function code, ModbusExceptionResponse when the
    device answers with an exception, Unavailable for an answer that does not fit the request
    (and, from the native client, on timeouts and lost connections), and pymodbus'
    ModbusException on a pymodbus client's timeouts and connection errors.
    """
    check_read_only(function_code)
    if isinstance(client, ModbusClient):
        # Same checks and messages as below, in modbus_client.decode_answer.
        return await client.read(function_code, address, count, device_id)
    if function_code == 1:
        rr = await client.read_coils(address, count=count, device_id=device_id)
    elif function_code == 2:
        rr = await client.read_discrete_inputs(address, count=count, device_id=device_id)
    elif function_code == 3:
        rr = await client.read_holding_registers(address, count=count, device_id=device_id)
    else:
        rr = await client.read_input_registers(address, count=count, device_id=device_id)
    if rr.isError():
        raise ModbusExceptionResponse(int(rr.exception_code), function_code, address, count)
    if int(rr.function_code) != function_code:
        # RTU frames carry no transaction id: a late answer to an earlier request would
        # otherwise be taken for this one.
        raise Unavailable(
            f"answer with function {rr.function_code} to a function {function_code} request"
        )
    if function_code in (1, 2):
        bits = [bool(b) for b in rr.bits]
        if len(bits) < count:
            raise Unavailable(f"short response: {len(bits)} of {count} bits")
        # Bits come padded to whole bytes.
        return bits[:count]
    words = list(rr.registers)  # ints already: a C-level copy, not int() per word
    if len(words) != count:
        raise Unavailable(f"response has {len(words)} registers, asked for {count}")
    return words


# -- faster register answers ------------------------------------------------------------------

_WORDS: dict[int, struct.Struct] = {}


def _decode_registers(pdu: ReadHoldingRegistersResponse, data: bytes) -> None:
    # Same result and errors as pymodbus' decode, in one unpack instead of one per register.
    n = int(data[0])
    if n >= len(data):
        raise ModbusIOException(
            f"byte_count {n} > length of packet {len(data)}", function_code=pdu.function_code
        )
    words = _WORDS.get(n)
    if words is None:
        words = _WORDS[n] = struct.Struct(f">{n // 2}H")
    pdu.registers = list(words.unpack_from(data, 1))


def _summary(pdu: ReadHoldingRegistersResponse) -> str:
    return (
        f"{type(pdu).__name__}(dev_id={pdu.dev_id}, transaction_id={pdu.transaction_id}, "
        f"{len(pdu.registers)} registers)"
    )


class _HoldingRegisters(ReadHoldingRegistersResponse):
    """Function 3 answer, decoded the cheap way (registered on facmon's clients only).

    pymodbus unpacks each register on its own and formats every decoded answer for a debug
    log line even when debug logging is off (``str(pdu)``, the whole register list): together
    about a quarter of the client's CPU per request for a 60-register read. The summary here
    leaves the register values out of that text.
    """

    def decode(self, data: bytes) -> None:
        _decode_registers(self, data)

    def __str__(self) -> str:
        return _summary(self)


class _InputRegisters(ReadInputRegistersResponse):
    """Function 4 answer, decoded the cheap way: see :class:`_HoldingRegisters`."""

    def decode(self, data: bytes) -> None:
        _decode_registers(self, data)

    def __str__(self) -> str:
        return _summary(self)


def _fast_answers(client: ModbusBaseClient) -> ModbusBaseClient:
    for answer in (_HoldingRegisters, _InputRegisters):
        client.register(answer)
    return client


# -- what a source connects to ------------------------------------------------------------------


def _serial_path(port: str) -> str:
    # /dev/serial/by-id/... names are symlinks; two names for one adapter are one bus.
    return os.path.realpath(port)


def connection_key(source: ModbusSource) -> tuple[str, ...]:
    """Identity of the connection a source uses: devices with equal keys share one."""
    if isinstance(source, ModbusRtuSource):
        return ("serial", _serial_path(source.port))
    return ("tcp", source.host.lower(), str(source.port))


def _line(source: ModbusRtuSource) -> str:
    return f"{source.baudrate} {source.bytesize}{source.parity}{source.stopbits}"


def describe_source(source: ModbusSource | MqttSource) -> str:
    """How an operator names where a device is, e.g. ``modbus_rtu_over_tcp 192.0.2.30:4001
    unit 3``, ``modbus_rtu /dev/ttyUSB0 9600 8N1 unit 2`` or ``mqtt topic site/+/leak``."""
    if isinstance(source, MqttSource):
        return f"mqtt topic {source.topic}" if source.topic else "mqtt"
    if isinstance(source, ModbusRtuSource):
        return f"{source.type} {source.port} {_line(source)} unit {source.unit_id}"
    return f"{source.type} {source.host}:{source.port} unit {source.unit_id}"


def bus_conflict(first: ModbusSource, other: ModbusSource) -> str | None:
    """Why two sources with the same :func:`connection_key` cannot share it, else None."""
    if first.type != other.type:
        return f"uses {other.type} where another device on it uses {first.type}"
    if (
        isinstance(first, ModbusRtuSource)
        and isinstance(other, ModbusRtuSource)
        and _line(first) != _line(other)
    ):
        return (
            f"line settings {_line(other)} differ from {_line(first)} of another device "
            "on the same serial port"
        )
    return None


# -- the shared connection ----------------------------------------------------------------------


@dataclass(slots=True)
class _Request:
    read: Read
    unit: int
    timeout: float
    retries: int
    future: asyncio.Future[list[int] | list[bool]]
    attempt: int = 0  # busy answers so far


@dataclass
class _Timing:
    between: float = 0.0
    after_connect: float = 0.0


class Connection:
    """One connection (TCP socket or serial port) shared by the unit ids behind it.

    Created from the first source that uses it; :meth:`join` adds the others (raising
    ValueError when they cannot share it). Pauses are the largest any of its sources asks for.
    """

    def __init__(self, source: ModbusSource) -> None:
        self.source = source
        self.key = connection_key(source)
        self._client: ModbusClient | ModbusBaseClient | None = None
        self._queue: deque[_Request] = deque()  # requests waiting for their turn, in order
        self._worker: asyncio.Task[None] | None = None  # sends them: see _work
        self._worker_loop: asyncio.AbstractEventLoop | None = None
        self._wakeup: asyncio.Future[None] | None = None  # the idle worker waits on it
        self._timing = _Timing()
        self._idle_since = float("-inf")  # loop time the last answer ended (or was given up)
        self._ready_at = float("-inf")  # loop time the connection may first be used
        self.join(source)

    @property
    def label(self) -> str:
        """Where the connection goes, e.g. ``192.0.2.30:4001`` or ``/dev/ttyUSB0``."""
        s = self.source
        return s.port if isinstance(s, ModbusRtuSource) else f"{s.host}:{s.port}"

    @property
    def pause_between_requests(self) -> float:
        return self._timing.between

    @property
    def pause_after_connect(self) -> float:
        return self._timing.after_connect

    def join(self, source: ModbusSource) -> None:
        if connection_key(source) != self.key:
            raise ValueError(f"{describe_source(source)} is not on {self.label}")
        why = bus_conflict(self.source, source)
        if why:
            raise ValueError(f"{self.label}: {describe_source(source)} {why}")
        self._timing.between = max(
            self._timing.between, source.pause_between_requests.total_seconds()
        )
        self._timing.after_connect = max(
            self._timing.after_connect, source.pause_after_connect.total_seconds()
        )

    @property
    def client(self) -> ModbusClient | ModbusBaseClient:
        # Created on first use: pymodbus binds a client to the running event loop.
        if self._client is None:
            self._client = self._new_client()
        return self._client

    def _new_client(self) -> ModbusClient | ModbusBaseClient:
        s = self.source
        if isinstance(s, ModbusRtuSource):
            # reconnect_delay=0: reconnect on demand, from the connection's worker, with the
            # polling device's timeout, instead of pymodbus' background reconnect loop.
            serial = AsyncModbusSerialClient(
                s.port,
                framer=FramerType.RTU,
                baudrate=s.baudrate,
                parity=s.parity,
                bytesize=s.bytesize,
                stopbits=s.stopbits,
                timeout=1.0,
                retries=0,
                reconnect_delay=0,
                trace_pdu=read_only_pdu_guard,
            )
            return _fast_answers(serial)
        return ModbusClient(s.host, s.port, rtu=s.type == "modbus_rtu_over_tcp")

    def _configure(self, timeout: float, retries: int) -> None:
        # Devices sharing the client may set different timeouts/retries; both clients read
        # them on every request.
        client = self.client
        if isinstance(client, ModbusClient):
            client.timeout, client.retries = timeout, retries
        else:
            client.ctx.comm_params.timeout_connect = timeout
            client.ctx.retries = retries

    def _cannot_connect(self) -> Unavailable:
        s = self.source
        if not isinstance(s, ModbusRtuSource):
            return Unavailable(f"cannot connect to {self.label}")
        if not os.path.exists(s.port):
            why = "no such device"
        elif not os.access(s.port, os.R_OK | os.W_OK):
            why = "permission denied (is the user in the 'dialout' group?)"
        else:
            why = "in use by another program, or not a serial port"
        return Unavailable(f"cannot open serial port {s.port}: {why}")

    async def _ensure_connected(self) -> None:
        if self.client.connected:
            return
        if not await self.client.connect():
            raise self._cannot_connect()
        self._ready_at = asyncio.get_running_loop().time() + self._timing.after_connect

    async def _quiet(self) -> None:
        loop = asyncio.get_running_loop()
        wait = max(self._ready_at, self._idle_since + self._timing.between) - loop.time()
        if wait > 0:
            await asyncio.sleep(wait)

    async def read(
        self, read: Read, unit: int, timeout: float, retries: int
    ) -> list[int] | list[bool]:
        """One planned read of ``unit``: waits its turn, retries a busy answer."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[int] | list[bool]] = loop.create_future()
        self._queue.append(_Request(read, unit, timeout, retries, future))
        if self._worker is None or self._worker.done() or self._worker_loop is not loop:
            self._worker_loop = loop
            self._worker = loop.create_task(self._work(), name=f"modbus {self.label}")
        elif self._wakeup is not None and not self._wakeup.done():
            self._wakeup.set_result(None)
        # Cancelling this (the poll) leaves the request queued: the worker skips it.
        return await future

    async def _work(self) -> None:
        """Sends the queued requests one at a time, in order, for as long as there are any.

        One task per connection instead of a lock the polls take turns on: when an answer
        arrives the next request goes out in the same loop step, where a lock hand-off costs
        one more turn of the event loop per request, on a path that decides how many requests
        a gateway connection can carry per second.
        """
        loop = asyncio.get_running_loop()
        req: _Request | None = None
        try:
            while True:
                if not self._queue:
                    self._wakeup = loop.create_future()
                    await self._wakeup
                    continue
                req = self._queue.popleft()
                if req.future.done():  # its poll was cancelled while it waited
                    continue
                try:
                    words = await self._send(req)
                except ModbusExceptionResponse as exc:
                    if exc.code == BUSY and req.attempt < req.retries:
                        # Give the device a moment and the connection to the others meanwhile.
                        req.attempt += 1
                        loop.call_later(_BUSY_PAUSE_S * req.attempt, self._requeue, req)
                    elif not req.future.done():
                        req.future.set_exception(exc)
                except Exception as exc:
                    if not req.future.done():
                        req.future.set_exception(exc)
                else:
                    if not req.future.done():
                        req.future.set_result(words)
                req = None
        except asyncio.CancelledError:
            self._fail_waiting(req)
            raise

    def _requeue(self, req: _Request) -> None:
        if req.future.done() or self._worker is None or self._worker.done():
            if not req.future.done():
                req.future.set_exception(Unavailable(f"connection to {self.label} closed"))
            return
        self._queue.append(req)
        if self._wakeup is not None and not self._wakeup.done():
            self._wakeup.set_result(None)

    def _fail_waiting(self, current: _Request | None) -> None:
        waiting = [current] if current is not None else []
        waiting.extend(self._queue)
        self._queue.clear()
        for req in waiting:
            if not req.future.done():
                req.future.set_exception(Unavailable(f"connection to {self.label} closed"))

    async def _send(self, req: _Request) -> list[int] | list[bool]:
        read = req.read
        self._configure(req.timeout, req.retries)
        try:
            await self._ensure_connected()
            if self._ready_at > self._idle_since or self._timing.between > 0:
                await self._quiet()
            return await modbus_read(
                self.client, read.function_code, read.address, read.count, req.unit
            )
        except ModbusIOException as exc:
            if "No response" not in str(exc):
                raise
            raise Unavailable(
                f"no response within {req.timeout:g} s ({req.retries + 1} attempt(s))"
            ) from exc
        finally:
            self._idle_since = asyncio.get_running_loop().time()

    def close(self) -> None:
        if self._worker is not None and not self._worker.done():
            self._worker.cancel()  # fails what is queued once it runs
        else:
            self._fail_waiting(None)
        self._worker = None
        if self._client is not None:
            self._client.close()
            self._client = None
