"""A cheap Modbus TCP server for benchmarks: many unit ids per port, reads of registers only.

The pymodbus server costs about as much CPU per request as the pymodbus client, so a benchmark
of the client side that uses it measures two clients. This one is a plain ``asyncio.Protocol``
that parses the MBAP header, answers function codes 3 and 4 by slicing a precomputed byte image
of each unit's registers, and answers everything else with exception 1 (illegal function). It
runs in its own process (:class:`SimulatorProcess`) so the client's CPU time can be measured on
its own, and it counts requests and registers served.

Devices are spread over ports like RS-485 gateways: ``units_per_port`` unit ids (1, 2, ...) per
listening port on 127.0.0.1. Unit ids without a device answer exception 11 (gateway target
failed to respond) at once, which is what a gateway reports for a dead unit behind it.

Register contents: the image of every unit is a run of big-endian (ABCD) float32 values, value
``k`` in registers ``2k`` and ``2k + 1``, so any profile of float32 fields at even addresses
decodes to finite, plausible numbers (see :func:`register_image`).
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import struct
import time
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

__all__ = [
    "UNITS_PER_PORT",
    "ServerStats",
    "SimulatorProcess",
    "register_image",
    "serve",
]

UNITS_PER_PORT = 50
HOST = "127.0.0.1"
MAX_UNIT = 247

_MBAP = struct.Struct(">HHHBB")  # transaction id, protocol id, length, unit id, function code
_READ = struct.Struct(">HH")  # start address, count
_REPLY_HEAD = struct.Struct(">HHHBBB")  # MBAP, function code, byte count
_EXCEPTION = struct.Struct(">HHHBBB")  # MBAP, function code | 0x80, exception code
_MAX_READ = 125
_ILLEGAL_FUNCTION, _ILLEGAL_ADDRESS, _TARGET_FAILED = 1, 2, 11


def register_image(unit_index: int, registers: int) -> bytes:
    """Contents of one unit's registers 0..registers-1: float32 ABCD values, two per value.

    Values differ per unit (``100 + k + unit_index / 1000``) so a mixed-up reply is visible.
    """
    values = (registers + 1) // 2
    data = b"".join(struct.pack(">f", 100.0 + k + unit_index / 1000) for k in range(values))
    return data[: 2 * registers]


@dataclass
class ServerStats:
    """Counters of one server process; read through :meth:`SimulatorProcess.stats`."""

    requests: int = 0
    registers: int = 0
    errors: int = 0  # exception replies sent
    cpu_s: float = 0.0  # process CPU time of the server when the stats were taken


class _Gateway(asyncio.Protocol):
    """One client connection to one port; ``images`` is indexed by unit id (None: no unit)."""

    def __init__(self, images: Sequence[bytes | None], stats: ServerStats) -> None:
        self._images = images
        self._stats = stats
        self._buf = b""
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None

    def data_received(self, data: bytes) -> None:
        buf = self._buf + data if self._buf else data
        n = len(buf)
        off = 0
        out: list[bytes] = []
        stats = self._stats
        images = self._images
        while n - off >= 8:
            tid, _pid, length, unit, fc = _MBAP.unpack_from(buf, off)
            end = off + 6 + length
            if end > n:
                break
            if length < 2 or length > 254:
                # Not Modbus TCP: drop the connection rather than guess where frames start.
                if self._transport is not None:
                    self._transport.close()
                self._buf = b""
                return
            stats.requests += 1
            image = images[unit] if unit < len(images) else None
            if image is None:
                code = _TARGET_FAILED
            elif fc not in (3, 4) or length != 6:
                code = _ILLEGAL_FUNCTION
            else:
                address, count = _READ.unpack_from(buf, off + 8)
                lo, hi = 2 * address, 2 * (address + count)
                if 1 <= count <= _MAX_READ and hi <= len(image):
                    out.append(_REPLY_HEAD.pack(tid, 0, 3 + 2 * count, unit, fc, 2 * count))
                    out.append(image[lo:hi])
                    stats.registers += count
                    off = end
                    continue
                code = _ILLEGAL_ADDRESS
            stats.errors += 1
            out.append(_EXCEPTION.pack(tid, 0, 3, unit, (fc | 0x80) & 0xFF, code))
            off = end
        self._buf = buf[off:]
        if out and self._transport is not None:
            self._transport.write(b"".join(out))


async def serve(
    devices: int,
    registers: int,
    units_per_port: int = UNITS_PER_PORT,
    stats: ServerStats | None = None,
) -> tuple[list[asyncio.Server], list[int], ServerStats]:
    """Start the listeners for ``devices`` units in the running loop; (servers, ports, stats).

    Device ``i`` is unit ``i % units_per_port + 1`` on port ``ports[i // units_per_port]``.
    """
    if not 1 <= units_per_port <= MAX_UNIT:
        raise ValueError(f"units_per_port must be 1..{MAX_UNIT}")
    if devices < 1 or registers < 1:
        raise ValueError("devices and registers must be positive")
    stats = stats or ServerStats()
    loop = asyncio.get_running_loop()
    servers: list[asyncio.Server] = []
    ports: list[int] = []
    for first in range(0, devices, units_per_port):
        units = min(units_per_port, devices - first)
        images: list[bytes | None] = [None] * (MAX_UNIT + 1)
        for u in range(units):
            images[u + 1] = register_image(first + u, registers)

        def factory(images: list[bytes | None] = images) -> _Gateway:
            return _Gateway(images, stats)

        server = await loop.create_server(factory, HOST, 0, backlog=64)
        servers.append(server)
        ports.append(int(server.sockets[0].getsockname()[1]))
    return servers, ports, stats


async def _child(conn: Connection, devices: int, registers: int, units_per_port: int) -> None:
    servers, ports, stats = await serve(devices, registers, units_per_port)
    conn.send(ports)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()

    def on_command() -> None:
        try:
            cmd = conn.recv()
        except (EOFError, OSError):  # the parent is gone: do not outlive it
            stop.set()
            return
        if cmd == "stats":
            stats.cpu_s = time.process_time()
            conn.send(stats)
        else:
            stop.set()

    loop.add_reader(conn.fileno(), on_command)
    try:
        await stop.wait()
    finally:
        loop.remove_reader(conn.fileno())
        for s in servers:
            s.close()


def _child_main(conn: Connection, devices: int, registers: int, units_per_port: int) -> None:
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_child(conn, devices, registers, units_per_port))
    conn.close()


class SimulatorProcess:
    """The cheap server in a child process; use as a context manager.

    ``ports`` lists the listening ports once started. The child exits when told to, when this
    object is closed, or when the parent process dies (its end of the pipe closes).
    """

    def __init__(self, devices: int, registers: int, units_per_port: int = UNITS_PER_PORT) -> None:
        self.devices = devices
        self.registers = registers
        self.units_per_port = units_per_port
        self.ports: list[int] = []
        self._conn: Connection | None = None
        self._proc: Any = None

    def start(self, timeout: float = 30.0) -> SimulatorProcess:
        # spawn: the parent may already run threads (DuckDB, the outbox writer) that a fork
        # would copy in an unknown state.
        ctx = multiprocessing.get_context("spawn")
        parent, child = ctx.Pipe()
        self._proc = ctx.Process(
            target=_child_main,
            args=(child, self.devices, self.registers, self.units_per_port),
            name="cheap-modbus-server",
            daemon=True,
        )
        self._proc.start()
        child.close()
        self._conn = parent
        if not parent.poll(timeout):
            self.close()
            raise RuntimeError(f"simulator did not start within {timeout:g} s")
        self.ports = list(parent.recv())
        return self

    def address(self, device_index: int) -> tuple[int, int]:
        """(port, unit id) of device ``device_index``."""
        port = self.ports[device_index // self.units_per_port]
        return port, device_index % self.units_per_port + 1

    def stats(self, timeout: float = 10.0) -> ServerStats:
        if self._conn is None:
            raise RuntimeError("simulator is not running")
        self._conn.send("stats")
        if not self._conn.poll(timeout):
            raise RuntimeError("simulator did not answer")
        result = self._conn.recv()
        assert isinstance(result, ServerStats)
        return result

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else int(self._proc.pid)

    def close(self) -> None:
        conn, proc = self._conn, self._proc
        self._conn = self._proc = None
        if conn is not None:
            with contextlib.suppress(OSError):
                conn.send("stop")
            conn.close()
        if proc is not None:
            proc.join(5.0)
            if proc.is_alive():
                proc.terminate()
                proc.join(5.0)

    def __enter__(self) -> SimulatorProcess:
        return self.start() if self._proc is None else self

    def __exit__(self, *exc: object) -> None:
        self.close()
