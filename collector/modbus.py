"""Modbus TCP polling: every configured device read on its own schedule, turned into Readings.

Devices behind one gateway share one TCP connection (one pymodbus client per host:port) and an
asyncio.Lock keeps at most one request in flight on it, which is what RS-485 gateways expect.
Each device polls on its own ``poll_interval`` with a start offset so units on one gateway do
not fire together. A device that fails costs only its own timeout and retries, backs off while
down, and is logged once when it goes down and once when it comes back.

Safety: facmon never writes to building equipment. Every request goes through
:func:`modbus_read`, which allows only the read function codes 1-4; a second guard on the
client's outgoing PDUs refuses anything else even if code elsewhere bypassed it.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Any

from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException, ModbusIOException

from collector.codec import decode_raw, quality_of, scaled
from collector.planner import Read, plan
from collector.profile import Profile, ProfileError, load_profile
from collector.tags import device_tags
from config.models import Device
from store.reading import Quality, Reading

__all__ = [
    "READ_FUNCTION_CODES",
    "DeviceHealth",
    "ModbusCollector",
    "ModbusExceptionResponse",
    "ReadOnlyViolation",
    "check_read_only",
    "modbus_read",
    "read_only_pdu_guard",
]

log = logging.getLogger(__name__)

READ_FUNCTION_CODES = frozenset({1, 2, 3, 4})

_ILLEGAL_FUNCTION, _ILLEGAL_ADDRESS, _ILLEGAL_VALUE, _BUSY = 1, 2, 3, 6
# The device answered but refuses this read: a profile/config problem, not an outage.
_CONFIG_CODES = frozenset({_ILLEGAL_FUNCTION, _ILLEGAL_ADDRESS, _ILLEGAL_VALUE})
_EXCEPTION_NAMES = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "device failure",
    5: "acknowledge",
    6: "device busy",
    8: "memory parity error",
    10: "gateway path unavailable",
    11: "gateway target failed to respond",
}
_BUSY_PAUSE_S = 0.05
_HEALTH_UNITS = {"device_up": "", "poll_latency": "s", "consecutive_failures": ""}


class ReadOnlyViolation(RuntimeError):
    """Something tried to send a Modbus function code other than a read (1, 2, 3, 4)."""


class ModbusExceptionResponse(Exception):
    """The device answered a read with a Modbus exception code."""

    def __init__(self, code: int, function_code: int, address: int, count: int) -> None:
        self.code = code
        self.function_code = function_code
        self.address = address
        self.count = count
        name = _EXCEPTION_NAMES.get(code, "unknown")
        super().__init__(
            f"Modbus exception {code} ({name}) for function {function_code} "
            f"address {address} count {count}"
        )


class _Unavailable(Exception):
    """The device or gateway cannot be reached or gives no usable answer."""


def check_read_only(function_code: int) -> None:
    if function_code not in READ_FUNCTION_CODES:
        raise ReadOnlyViolation(
            f"refusing to send Modbus function code {function_code}: facmon only reads "
            f"(function codes {sorted(READ_FUNCTION_CODES)})"
        )


def read_only_pdu_guard(sending: bool, pdu: Any) -> Any:
    """pymodbus ``trace_pdu`` hook refusing to send any PDU but a read.

    The second line of defence: the client calls it for every PDU it frames, so a write cannot
    leave even if code calls ``client.write_*`` directly instead of :func:`modbus_read`.
    """
    if sending:
        check_read_only(int(pdu.function_code))
    return pdu


async def modbus_read(
    client: AsyncModbusTcpClient, function_code: int, address: int, count: int, device_id: int
) -> list[int] | list[bool]:
    """The one function through which facmon sends Modbus requests; reads only.

    Returns ``count`` registers (function codes 3, 4) or bits (1, 2). Raises ReadOnlyViolation
    for any other function code, ModbusExceptionResponse when the device answers with an
    exception, and pymodbus' ModbusException on timeouts and connection errors.
    """
    check_read_only(function_code)
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
    if function_code in (1, 2):
        bits = [bool(b) for b in rr.bits]
        if len(bits) < count:
            raise _Unavailable(f"short response: {len(bits)} of {count} bits")
        # Bits come padded to whole bytes.
        return bits[:count]
    words = [int(w) for w in rr.registers]
    if len(words) != count:
        raise _Unavailable(f"response has {len(words)} registers, asked for {count}")
    return words


@dataclass
class DeviceHealth:
    """What the collector knows about one device, updated after every poll."""

    up: bool = False
    consecutive_failures: int = 0
    last_ok: datetime | None = None
    last_latency_s: float | None = None
    overruns: int = 0
    polls: int = 0
    down_since: datetime | None = None
    last_error: str | None = None
    invalid_values: int = 0  # NaN/inf decoded: no store can hold them, so they are counted


class _Connection:
    """One TCP connection to a device or gateway, shared by the unit ids behind it."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self._client: AsyncModbusTcpClient | None = None
        self.lock = asyncio.Lock()

    @property
    def client(self) -> AsyncModbusTcpClient:
        # Created on first use: pymodbus binds a client to the running event loop.
        if self._client is None:
            # reconnect_delay=0: reconnect on demand, under the lock, with the polling
            # device's timeout, instead of pymodbus' background reconnect loop.
            self._client = AsyncModbusTcpClient(
                self.host,
                port=self.port,
                timeout=1.0,
                retries=0,
                reconnect_delay=0,
                trace_pdu=read_only_pdu_guard,
            )
        return self._client

    def _configure(self, timeout: float, retries: int) -> None:
        # The client is shared by devices whose sources may set different timeouts/retries;
        # pymodbus reads both from its transaction manager on every request.
        self.client.ctx.comm_params.timeout_connect = timeout
        self.client.ctx.retries = retries

    async def read(
        self, read: Read, unit: int, timeout: float, retries: int
    ) -> list[int] | list[bool]:
        attempt = 0
        while True:
            async with self.lock:
                self._configure(timeout, retries)
                if not self.client.connected and not await self.client.connect():
                    raise _Unavailable(f"cannot connect to {self.host}:{self.port}")
                try:
                    return await modbus_read(
                        self.client, read.function_code, read.address, read.count, unit
                    )
                except ModbusExceptionResponse as exc:
                    if exc.code != _BUSY or attempt >= retries:
                        raise
                except ModbusIOException as exc:
                    if "No response" not in str(exc):
                        raise
                    raise _Unavailable(
                        f"no response within {timeout:g} s ({retries + 1} attempt(s))"
                    ) from exc
            # Busy: give the device a moment, and the connection to the other units meanwhile.
            attempt += 1
            await asyncio.sleep(_BUSY_PAUSE_S * attempt)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


@dataclass
class _Poller:
    device: Device
    profile: Profile
    reads: list[Read]
    conn: _Connection
    tags: Mapping[str, str]
    interval: float
    timeout: float
    retries: int
    offset: float
    health: DeviceHealth
    down_logged: bool = False
    reported: set[tuple[object, ...]] = field(default_factory=set)

    @property
    def where(self) -> str:
        s = self.device.source
        return f"{s.host}:{s.port} unit {s.unit_id}"


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _truncate_ms(t: datetime) -> datetime:
    return t.replace(microsecond=t.microsecond - t.microsecond % 1000)


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    if isinstance(exc, _Unavailable | ModbusExceptionResponse):
        return text  # written for operators already
    if isinstance(exc, TimeoutError) and not text:
        text = "timed out"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class ModbusCollector:
    """Polls Modbus TCP devices and hands their Readings to ``sink``, one batch per poll.

    ``sink`` is called from the event loop with every reading of one device poll (metrics plus
    ``device_up``, ``poll_latency`` when up, ``consecutive_failures``); it should be quick
    (e.g. append to the outbox). Profiles are loaded here, so a bad profile fails at startup.
    """

    def __init__(
        self,
        devices: Sequence[Device],
        sink: Callable[[Sequence[Reading]], None],
        *,
        site_id: str,
        max_backoff_s: float = 60.0,
        max_gap: int = 10,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        if logging.getLogger("pymodbus").level == logging.NOTSET:
            # pymodbus logs an ERROR on every unanswered request; the collector reports a
            # device failure once when it starts and once when it ends, so keep pymodbus to
            # its critical messages unless the application configured its logger itself.
            logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
        self._sink = sink
        self._site_id = site_id
        self._max_backoff_s = max_backoff_s
        self._clock = clock
        self._sink_failing = False
        self.health: dict[str, DeviceHealth] = {}
        self._connections: dict[tuple[str, int], _Connection] = {}
        self._pollers: dict[str, _Poller] = {}
        by_conn: dict[tuple[str, int], list[Device]] = {}
        for dev in devices:
            if dev.id in self._pollers or dev.id in self.health:
                raise ValueError(f"device id {dev.id!r} appears twice")
            src = dev.source
            try:
                profile = load_profile(src.profile)
            except (ProfileError, FileNotFoundError) as exc:
                raise ValueError(f"device {dev.id!r}: {exc}") from exc
            key = (src.host, src.port)
            conn = self._connections.get(key)
            if conn is None:
                conn = self._connections[key] = _Connection(src.host, src.port)
            by_conn.setdefault(key, []).append(dev)
            health = self.health[dev.id] = DeviceHealth()
            # Strings cannot be a Reading's float value; profiles may list them for reference.
            regs = [r for r in profile.registers if r.type != "string"]
            self._pollers[dev.id] = _Poller(
                device=dev,
                profile=profile,
                reads=plan(regs, max_gap=max_gap),
                conn=conn,
                tags=MappingProxyType(device_tags(self._site_id, dev)),
                interval=dev.poll_interval.total_seconds(),
                timeout=src.timeout.total_seconds(),
                retries=src.retries,
                offset=0.0,
                health=health,
            )
        # Spread the units of one gateway evenly over their interval.
        for group in by_conn.values():
            for i, dev in enumerate(group):
                p = self._pollers[dev.id]
                p.offset = p.interval * i / len(group)


    @property
    def device_ids(self) -> list[str]:
        return list(self._pollers)

    def reads_of(self, device_id: str) -> list[Read]:
        """The reads one poll of the device sends (after any splitting of rejected reads)."""
        return list(self._pollers[device_id].reads)

    async def run(self) -> None:
        """Poll every device on its schedule until cancelled; closes the connections on exit."""
        try:
            async with asyncio.TaskGroup() as tg:
                for p in self._pollers.values():
                    tg.create_task(self._schedule(p), name=f"poll {p.device.id}")
        finally:
            self.close()

    def close(self) -> None:
        for conn in self._connections.values():
            conn.close()

    async def poll_device(self, device_id: str) -> list[Reading]:
        """Poll one device now: emit its readings to the sink and return them."""
        return await self._poll(self._pollers[device_id])

    def _backoff_intervals(self, p: _Poller) -> int:
        failures = p.health.consecutive_failures
        if failures <= 1:
            return 1
        cap = max(1, int(self._max_backoff_s // p.interval))
        return int(min(2 ** (failures - 1), cap))

    async def _schedule(self, p: _Poller) -> None:
        loop = asyncio.get_running_loop()
        next_due = loop.time() + p.offset
        while True:
            delay = next_due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            started = loop.time()
            try:
                await self._poll(p)
            except Exception:  # a bug must not stop this device's polling, nor the others'
                log.exception("device %s: poll failed unexpectedly", p.device.id)
            finished = loop.time()
            if finished - started > p.interval:
                p.health.overruns += 1
            next_due += p.interval * self._backoff_intervals(p)
            if next_due < finished:
                # Skip the slots the overrun ate instead of firing them back to back.
                next_due += math.ceil((finished - next_due) / p.interval) * p.interval

    async def _poll(self, p: _Poller) -> list[Reading]:
        t = _truncate_ms(self._clock())
        started = time.perf_counter()
        try:
            readings = await self._read_all(p, t)
            error: BaseException | None = None
        except (ModbusException, ModbusExceptionResponse, _Unavailable, OSError) as e:
            readings, error = [], e
        except Exception as e:  # garbage from one device must not take the collector down
            log.debug("device %s: unexpected error", p.device.id, exc_info=True)
            readings, error = [], e
        latency = time.perf_counter() - started
        h = p.health
        h.polls += 1
        if error is None:
            if p.down_logged:
                since = h.down_since or t
                log.info(
                    "device %s (%s) is back after %s down",
                    p.device.id,
                    p.where,
                    _format_duration(t - since),
                )
                p.down_logged = False
            h.up = True
            h.consecutive_failures = 0
            h.last_ok = t
            h.last_latency_s = latency
            h.down_since = None
            h.last_error = None
        else:
            reason = _describe(error)
            h.up = False
            h.consecutive_failures += 1
            h.last_error = reason
            if h.down_since is None:
                h.down_since = t
            if not p.down_logged:
                src = p.device.source
                log.warning(
                    "device %s (host %s port %d unit %d) is down: %s",
                    p.device.id,
                    src.host,
                    src.port,
                    src.unit_id,
                    reason,
                )
                p.down_logged = True
        health = [("device_up", 1.0 if h.up else 0.0)]
        if h.up:
            health.append(("poll_latency", latency))
        health.append(("consecutive_failures", float(h.consecutive_failures)))
        for metric, value in health:
            readings.append(
                Reading(t, p.device.id, metric, value, _HEALTH_UNITS[metric], Quality.GOOD, p.tags)
            )
        self._emit(readings)
        return readings

    def _emit(self, readings: list[Reading]) -> None:
        try:
            self._sink(readings)
        except Exception:
            if not self._sink_failing:
                log.exception("collector sink failed; readings of this poll are lost")
                self._sink_failing = True
            return
        if self._sink_failing:
            log.info("collector sink works again")
            self._sink_failing = False

    async def _read_all(self, p: _Poller, t: datetime) -> list[Reading]:
        out: list[Reading] = []
        for read in list(p.reads):
            await self._read_into(p, read, t, out)
        return out

    async def _read_into(self, p: _Poller, read: Read, t: datetime, out: list[Reading]) -> None:
        try:
            words = await p.conn.read(read, p.device.source.unit_id, p.timeout, p.retries)
        except ModbusExceptionResponse as exc:
            if exc.code not in _CONFIG_CODES:
                raise
            if len(read.registers) > 1:
                await self._split(p, read, exc, t, out)
            else:
                reg = read.registers[0][0]
                self._report_once(
                    p,
                    ("rejected", reg.table, reg.address),
                    "device %s (%s): register %r (%s address %d) rejected with %s; check the "
                    "profile %r and the unit id",
                    p.device.id,
                    p.where,
                    reg.metric,
                    reg.table,
                    reg.address,
                    exc,
                    p.profile.name,
                )
            return
        for reg, offset in read.registers:
            try:
                raw = decode_raw(reg, words[offset : offset + reg.count])
                quality = quality_of(reg, raw)
                value = scaled(reg, raw)
            except (ValueError, TypeError) as exc:
                self._report_once(
                    p,
                    ("decode", reg.metric),
                    "device %s: cannot decode %r: %s",
                    p.device.id,
                    reg.metric,
                    exc,
                )
                continue
            if not math.isfinite(value):
                p.health.invalid_values += 1
                self._report_once(
                    p,
                    ("nonfinite", reg.metric),
                    "device %s: %r decoded to %s; not stored (counted in invalid_values)",
                    p.device.id,
                    reg.metric,
                    value,
                )
                continue
            out.append(Reading(t, p.device.id, reg.metric, value, reg.unit, quality, p.tags))

    async def _split(
        self, p: _Poller, read: Read, exc: ModbusExceptionResponse, t: datetime, out: list[Reading]
    ) -> None:
        # A merged read may span addresses the device does not implement: read contiguous runs
        # only, and if that is the same read, one register at a time. Keep the smaller reads.
        regs = [r for r, _ in read.registers]
        pieces = plan(regs, max_gap=0)
        if len(pieces) == 1:
            pieces = [piece for r in regs for piece in plan([r])]
        self._report_once(
            p,
            ("split", read.table, read.address, read.count),
            "device %s (%s): %s read of %d at %d rejected (%s); reading it in %d pieces",
            p.device.id,
            p.where,
            read.table,
            read.count,
            read.address,
            exc,
            len(pieces),
        )
        i = p.reads.index(read)
        p.reads[i : i + 1] = pieces
        for piece in pieces:
            await self._read_into(p, piece, t, out)

    def _report_once(self, p: _Poller, key: tuple[object, ...], msg: str, *args: object) -> None:
        if key in p.reported:
            return
        p.reported.add(key)
        log.warning(msg, *args)


def _format_duration(d: timedelta) -> str:
    s = d.total_seconds()
    if s < 60:
        return f"{s:.1f} s"
    if s < 3600:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.1f} h"
