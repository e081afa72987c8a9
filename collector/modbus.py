"""Modbus polling: every configured device read on its own schedule, turned into Readings.

Devices reach their units over Modbus TCP, RTU over TCP (serial gateways in transparent mode) or
RTU on a local serial port (``collector.transport``). Units behind one gateway or on one serial
bus share one connection, with at most one request in flight and the configured pauses between
requests. Each device polls on its own ``poll_interval`` with a start offset so units on one
connection do not fire together. A device that fails costs only its own timeout and retries,
backs off while down, and is logged once when it goes down and once when it comes back.

Safety: facmon never writes to building equipment. Every request goes through
:func:`modbus_read`, which allows only the read function codes 1-4; behind it, the TCP client
(``collector.modbus_client``) has no write method and builds read frames only, and a guard on
the serial pymodbus client's outgoing PDUs refuses anything else even if code elsewhere
bypassed :func:`modbus_read`.
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

from pymodbus.exceptions import ModbusException

from collector.codec import BlockDecoder, block_decoder
from collector.hygiene import CounterGuard
from collector.planner import Read, apply_overrides, device_reads, plan
from collector.profile import Profile, ProfileError, load_profile
from collector.tags import device_tags
from collector.transport import (
    READ_FUNCTION_CODES,
    Connection,
    ModbusExceptionResponse,
    ReadOnlyViolation,
    Unavailable,
    check_read_only,
    connection_key,
    describe_source,
    modbus_read,
    read_only_pdu_guard,
)
from config.models import Device, ModbusSource, MqttSource
from store.polls import PollBatch
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

_ILLEGAL_FUNCTION, _ILLEGAL_ADDRESS, _ILLEGAL_VALUE = 1, 2, 3
# The device answered but refuses this read: a profile/config problem, not an outage.
_CONFIG_CODES = frozenset({_ILLEGAL_FUNCTION, _ILLEGAL_ADDRESS, _ILLEGAL_VALUE})
_HEALTH_UNITS = {
    "device_up": "",
    "poll_latency": "s",
    "consecutive_failures": "",
    "last_ok_age": "s",  # seconds since the last good read: how stale the device's data is
}
_UP_METRICS = ("device_up", "poll_latency", "consecutive_failures", "last_ok_age")
_UP_UNITS = tuple(_HEALTH_UNITS[m] for m in _UP_METRICS)
_UP_QUALITIES = (Quality.GOOD,) * len(_UP_METRICS)


class _Columns:
    """The values of one poll as they are read, column by column (see store.polls)."""

    __slots__ = ("block", "metrics", "qualities", "units", "values")

    def __init__(self) -> None:
        self.metrics: list[str] = []
        self.values: list[float] = []
        self.units: list[str] = []
        self.qualities: list[Quality] = []
        # The one block decoder that made every value so far (None: several, or field by field)
        self.block: BlockDecoder | None = None

    def add(
        self,
        metrics: Sequence[str],
        values: Sequence[float],
        units: Sequence[str],
        qualities: Sequence[Quality],
        block: BlockDecoder | None = None,
    ) -> None:
        self.block = block if not self.metrics else None
        self.metrics.extend(metrics)
        self.values.extend(values)
        self.units.extend(units)
        self.qualities.extend(qualities)


# Metrics and units of "one block read, then the health samples of a good poll", per block
# decoder: the same tuple objects for every poll of a device, which the store turns into
# columns almost for free (store.columnar). Keyed by id; the entry holds the decoder.
_Names = tuple[BlockDecoder, tuple[str, ...], tuple[str, ...], tuple[Quality, ...]]
_UP_NAMES: dict[int, _Names] = {}


def _up_names(block: BlockDecoder) -> _Names:
    hit = _UP_NAMES.get(id(block))
    if hit is None or hit[0] is not block:
        hit = _UP_NAMES[id(block)] = (
            block,
            block.metrics + _UP_METRICS,
            block.units + _UP_UNITS,
            block.good + _UP_QUALITIES,
        )
    return hit


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


@dataclass
class _Poller:
    device: Device
    source: ModbusSource
    profile: Profile
    reads: list[Read]
    conn: Connection
    tags: Mapping[str, str]
    interval: float
    timeout: float
    retries: int
    offset: float
    health: DeviceHealth
    down_logged: bool = False
    busy: bool = False  # a poll is in flight: stop() lets it finish
    reported: set[tuple[object, ...]] = field(default_factory=set)
    # Built on first use per read; keyed by id: reads live in ``reads`` as long as they are used.
    decoders: dict[int, tuple[Read, BlockDecoder]] = field(default_factory=dict)

    def decoder(self, read: Read) -> BlockDecoder:
        hit = self.decoders.get(id(read))
        if hit is None or hit[0] is not read:
            hit = self.decoders[id(read)] = (read, block_decoder(read.registers, read.count))
        return hit[1]

    @property
    def where(self) -> str:
        return describe_source(self.source)


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _truncate_ms(t: datetime) -> datetime:
    return t.replace(microsecond=t.microsecond - t.microsecond % 1000)


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    if isinstance(exc, Unavailable | ModbusExceptionResponse):
        return text  # written for operators already
    if isinstance(exc, TimeoutError) and not text:
        text = "timed out"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class ModbusCollector:
    """Polls Modbus devices and hands their Readings to ``sink``, one batch per poll.

    ``sink`` is called from the event loop with every reading of one device poll (metrics plus
    ``device_up``, ``poll_latency`` when up, ``consecutive_failures``, ``last_ok_age`` once a
    read succeeded) as a :class:`store.polls.PollBatch`: a ``Sequence[Reading]`` held as
    columns, whose rows are built only if the sink asks for them. It should be quick (e.g.
    append to a hand-off; ``ReadingBatch.from_readings`` takes the columns as they are).

    Profiles are loaded, per-device overrides applied and reads
    planned here (devices with another source, e.g. MQTT, are left out), so a bad profile or
    override fails at startup (ValueError naming the device),
    as do devices that cannot share a connection (one serial port with two baud rates, one
    gateway port spoken to with two framings). ``max_gap``, when given, replaces every
    device's ``source.max_gap``.
    """

    def __init__(
        self,
        devices: Sequence[Device],
        sink: Callable[[Sequence[Reading]], None],
        *,
        site_id: str,
        max_backoff_s: float = 60.0,
        max_gap: int | None = None,
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
        self._stopping = False
        self._tasks: list[tuple[_Poller, asyncio.Task[None]]] = []
        self._counters = CounterGuard()
        self.health: dict[str, DeviceHealth] = {}
        self._connections: dict[tuple[str, ...], Connection] = {}
        self._pollers: dict[str, _Poller] = {}
        by_conn: dict[tuple[str, ...], list[Device]] = {}
        for dev in devices:
            if dev.id in self._pollers or dev.id in self.health:
                raise ValueError(f"device id {dev.id!r} appears twice")
            src = dev.source
            if isinstance(src, MqttSource):
                continue  # fed by the MQTT collector; it has nothing to poll
            if max_gap is not None:
                src = src.model_copy(update={"max_gap": max_gap})
            try:
                profile = load_profile(src.profile)
                reads = device_reads(src, profile)
                profile = apply_overrides(profile, src.overrides)
            except (ProfileError, FileNotFoundError) as exc:
                raise ValueError(f"device {dev.id!r}: {exc}") from exc
            except ValueError as exc:  # a register longer than the device's read limit
                raise ValueError(f"device {dev.id!r}: {exc}") from exc
            key = connection_key(src)
            conn = self._connections.get(key)
            try:
                if conn is None:
                    conn = self._connections[key] = Connection(src)
                else:
                    conn.join(src)
            except ValueError as exc:
                raise ValueError(f"device {dev.id!r}: {exc}") from exc
            by_conn.setdefault(key, []).append(dev)
            health = self.health[dev.id] = DeviceHealth()
            self._pollers[dev.id] = _Poller(
                device=dev,
                source=src,
                profile=profile,
                reads=reads,
                conn=conn,
                tags=MappingProxyType(device_tags(self._site_id, dev)),
                interval=dev.poll_interval.total_seconds(),
                timeout=src.timeout.total_seconds(),
                retries=src.retries,
                offset=0.0,
                health=health,
            )
        # Spread the units of one connection evenly over their interval.
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
                    task = tg.create_task(self._schedule(p), name=f"poll {p.device.id}")
                    self._tasks.append((p, task))
        finally:
            self._tasks.clear()
            self.close()

    def stop(self) -> None:
        """End :meth:`run` once every device has finished the poll it is in (a config reload
        swaps collectors this way, so no poll's readings are lost). Cancelling ``run`` instead
        stops at once and abandons polls in flight."""
        self._stopping = True
        for p, task in self._tasks:
            if not p.busy:
                task.cancel()  # it is waiting for its next poll: nothing to lose

    def close(self) -> None:
        for conn in self._connections.values():
            conn.close()

    async def poll_device(self, device_id: str) -> list[Reading]:
        """Poll one device now: emit its readings to the sink and return them."""
        return list(await self._poll(self._pollers[device_id]))

    def _backoff_intervals(self, p: _Poller) -> int:
        failures = p.health.consecutive_failures
        if failures <= 1:
            return 1
        cap = max(1, int(self._max_backoff_s // p.interval))
        return int(min(2 ** (failures - 1), cap))

    async def _schedule(self, p: _Poller) -> None:
        loop = asyncio.get_running_loop()
        me = asyncio.current_task()
        next_due = loop.time() + p.offset
        while True:
            delay = next_due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            if self._stopping:
                return
            started = loop.time()
            p.busy = True
            try:
                await self._poll(p)
            except Exception:  # a bug must not stop this device's polling, nor the others'
                log.exception("device %s: poll failed unexpectedly", p.device.id)
            finally:
                p.busy = False
            if self._stopping:
                return
            if me is not None and me.cancelling():
                # Python 3.11's asyncio.wait_for (inside pymodbus) drops a cancellation that
                # lands as the answer arrives; without this the collector would not stop.
                raise asyncio.CancelledError
            finished = loop.time()
            if finished - started > p.interval:
                p.health.overruns += 1
            next_due += p.interval * self._backoff_intervals(p)
            if next_due < finished:
                # Skip the slots the overrun ate instead of firing them back to back.
                next_due += math.ceil((finished - next_due) / p.interval) * p.interval

    async def _poll(self, p: _Poller) -> PollBatch:
        t = _truncate_ms(self._clock())
        started = time.perf_counter()
        cols = _Columns()
        error: BaseException | None = None
        try:
            await self._read_all(p, t, cols)
        except (ModbusException, ModbusExceptionResponse, Unavailable, OSError) as e:
            error = e
        except Exception as e:  # garbage from one device must not take the collector down
            log.debug("device %s: unexpected error", p.device.id, exc_info=True)
            error = e
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
                    extra={"device": p.device.id},
                )
                p.down_logged = False
            h.up = True
            h.consecutive_failures = 0
            h.last_ok = t
            h.last_latency_s = latency
            h.down_since = None
            h.last_error = None
            # Up, no failures, the last good read is this one.
            up = (1.0, latency, 0.0, 0.0)
            metrics: Sequence[str]
            units: Sequence[str]
            qualities: Sequence[Quality]
            if cols.block is not None and len(cols.metrics) == len(cols.block.metrics):
                _, metrics, units, good = _up_names(cols.block)
                values = cols.values
                values.extend(up)
                qualities = (
                    good
                    if cols.qualities == list(cols.block.good)
                    else [
                        *cols.qualities,
                        *_UP_QUALITIES,
                    ]
                )
            else:
                cols.add(_UP_METRICS, up, _UP_UNITS, _UP_QUALITIES)
                metrics, values, units, qualities = (
                    cols.metrics,
                    cols.values,
                    cols.units,
                    cols.qualities,
                )
        else:
            reason = _describe(error)
            h.up = False
            h.consecutive_failures += 1
            h.last_error = reason
            if h.down_since is None:
                h.down_since = t
            if not p.down_logged:
                log.warning(
                    "device %s (%s) is down: %s",
                    p.device.id,
                    p.where,
                    reason,
                    extra={"device": p.device.id},
                )
                p.down_logged = True
            # A failed poll stores none of its values, even those read before the failure.
            health = [("device_up", 0.0), ("consecutive_failures", float(h.consecutive_failures))]
            if h.last_ok is not None:
                health.append(("last_ok_age", (t - h.last_ok).total_seconds()))
            metrics = [m for m, _ in health]
            values = [v for _, v in health]
            units = [_HEALTH_UNITS[m] for m in metrics]
            qualities = [Quality.GOOD] * len(health)
        batch = PollBatch(t, p.device.id, p.tags, metrics, values, units, qualities)
        self._emit(batch)
        return batch

    def _emit(self, readings: PollBatch) -> None:
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

    async def _read_all(self, p: _Poller, t: datetime, cols: _Columns) -> None:
        for read in list(p.reads):
            await self._read_into(p, read, t, cols)

    async def _read_into(self, p: _Poller, read: Read, t: datetime, cols: _Columns) -> None:
        try:
            words = await p.conn.read(read, p.source.unit_id, p.timeout, p.retries)
        except ModbusExceptionResponse as exc:
            if exc.code not in _CONFIG_CODES:
                raise
            if len(read.registers) > 1:
                await self._split(p, read, exc, t, cols)
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
        dec = p.decoder(read)
        fast = dec.columns(words)
        if fast is not None:
            values, qualities = fast
            if dec.counters:
                qualities = list(qualities)
                for i in dec.counters:
                    reg = dec.fields[i].register
                    checked = self._counters.check(
                        Reading(
                            t, p.device.id, reg.metric, values[i], reg.unit, qualities[i], p.tags
                        ),
                        reg.rollover,
                        reg.max_rate,
                    )
                    qualities[i] = checked.quality
            cols.add(dec.metrics, values, dec.units, qualities, dec)
            return
        for reg, value, quality in p.decoder(read).decode(words):
            if value is None:
                self._report_once(
                    p,
                    ("decode", reg.metric),
                    "device %s: cannot decode %r",
                    p.device.id,
                    reg.metric,
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
            if reg.counter:
                # Glitches are flagged at the source; store.counters also skips them at query
                # time, so a flag here is for people and dashboards, never lost use.
                reading = Reading(t, p.device.id, reg.metric, value, reg.unit, quality, p.tags)
                quality = self._counters.check(reading, reg.rollover, reg.max_rate).quality
            cols.add((reg.metric,), [value], (reg.unit,), (quality,))

    async def _split(
        self, p: _Poller, read: Read, exc: ModbusExceptionResponse, t: datetime, cols: _Columns
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
            await self._read_into(p, piece, t, cols)

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
