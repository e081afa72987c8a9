"""A whole simulated site: behaviour models behind real Modbus TCP servers.

Every device of the site config whose source is ``modbus_tcp`` gets a behaviour model chosen by
``device.kind`` and a register image laid out by its profile; register contents are written
with :func:`collector.codec.encode`, so the collector decodes exactly what the model produced.
MQTT sensors (an ``mqtt`` source with ``tags.probe``) are simulated by
:mod:`simulator.mqtt_sensors` instead (``SimulatedBuilding.mqtt_sensors``), which publishes
them to a broker; their history comes with the rest.

Gateways: devices with the same ``(host, port)`` in the config share one server and answer as
different unit ids, like meters on one RS-485 line behind a serial-to-Ethernet gateway. The
config's port is a placeholder (the config schema does not accept port 0): it is bound when it
is free, otherwise -- or always with ``free_ports=True`` -- a free port is picked, and
:func:`with_ports` rewrites a config to the ports actually bound.

Register blocks: each table a profile uses is served from its lowest to its highest address;
addresses in gaps read as 0 (so block reads across gaps work), addresses outside answer
ILLEGAL ADDRESS, writes are refused (read-only device), a unit id the gateway does not know
answers GATEWAY TARGET NO RESPONSE, and a device whose model has not been advanced yet answers
DEVICE BUSY rather than zeros that would look like counter resets.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import struct
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt
import pyarrow as pa
from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice
from pymodbus.simulator.simutils import SimUtils

from collector.codec import decode, encode
from collector.profile import BIT_TABLES, TYPE_WORDS, Profile, Register, load_profile
from collector.tags import device_tags
from config.models import Building, Device, ModbusTcpSource, SiteConfig
from simulator.models import (
    DeviceModel,
    ElevatorModel,
    ElevatorParams,
    OutdoorSensorModel,
    OutdoorSensorParams,
    PowerMeterModel,
    PowerMeterParams,
    Usage,
    WaterMeterModel,
    WaterMeterParams,
)
from simulator.mqtt_sensors import MqttSensors, simulated_by_mqtt
from simulator.noise import LocalClock
from store.columnar import SCHEMA, ReadingBatch, tags_json
from store.reading import Quality, Reading, to_us

__all__ = [
    "DEVICE_UP",
    "ModelParams",
    "SimulatedBuilding",
    "default_params",
    "roundtrip",
    "with_ports",
]

log = logging.getLogger(__name__)

ModelParams = PowerMeterParams | ElevatorParams | WaterMeterParams | OutdoorSensorParams

DEVICE_UP = "device_up"  # metric the collector writes per poll: 1 answered, 0 did not
# Simulated time between two columnar batches of polled metrics in history(): a day of two lifts'
# states at 5 s polls is ~100k rows, small enough to hand to a store in one write.
POLLED_CHUNK = timedelta(days=1)

# Defaults that turn a building's size into loads (documented in default_params).
_W_PER_M2 = 10.0
_M3H_PER_M2 = 1e-4
_LEAK_EVERY_DAYS = 21
_LEAK_NIGHTS = 5
_LEAK_M3H = 0.3
# Air conditioning, as a share of the peak per °C beyond the balance points: a Shanghai July
# afternoon (~33 °C) adds about 35% of the peak for cooling, a January morning (~2 °C) about
# 12% for heating.
_COOLING_PER_C = 0.025
_HEATING_PER_C = 0.012
_COOLING_BALANCE_C = 18.0
_HEATING_BALANCE_C = 12.0

_TABLE_OF_FC = {1: "coil", 2: "discrete", 3: "holding", 4: "input"}
_TABLE_SLOTS = ("coil", "discrete", "holding", "input")  # order of SimDevice's block tuple


def with_ports(
    config: SiteConfig, ports: Mapping[str, int], *, host: str | None = None
) -> SiteConfig:
    """A copy of ``config`` whose devices point at the ports (and optionally host) given.

    ``ports`` maps device id to port, as returned by :meth:`SimulatedBuilding.start`; devices
    not in it are left as they are.
    """
    unknown = set(ports) - {d.id for d in config.devices}
    if unknown:
        raise KeyError(f"no such device(s) in the config: {', '.join(sorted(unknown))}")
    devices = []
    for d in config.devices:
        if d.id not in ports:
            devices.append(d)
            continue
        update: dict[str, object] = {"port": ports[d.id]}
        if host is not None:
            update["host"] = host
        devices.append(d.model_copy(update={"source": d.source.model_copy(update=update)}))
    return config.model_copy(update={"devices": devices})


def default_params(config: SiteConfig) -> dict[str, ModelParams]:
    """Model parameters derived from the config, per device id.

    * power meters: peak load of 10 W per m2 of the building's floor area, split over the
      building's power meters; ``tags.usage`` ``mall`` or ``office`` (default) picks the daily
      shape; air conditioning adds 2.5% of the peak per °C above 18 °C outdoors and 1.2% per
      °C below 12 °C (the site's simulated weather is Shanghai-like);
    * water meters: peak use of 0.1 L/h per m2, split likewise; the site's first water meter
      leaks 0.3 m3/h for 5 nights every 21 days, so any 26-day history holds a whole episode;
    * elevators: serve the building's basements (negative floors) to its top floor;
    * sensors: an outdoor temperature and humidity transmitter (the one sensor simulated).
    """
    buildings: dict[str, Building] = {b.id: b for b in config.buildings}
    per_building: dict[tuple[str, str], int] = {}
    for d in config.devices:
        key = (d.location.building, d.kind)
        per_building[key] = per_building.get(key, 0) + 1
    out: dict[str, ModelParams] = {}
    first_water = True
    for d in config.devices:
        if simulated_by_mqtt(d):
            continue  # simulator.mqtt_sensors: no parameters
        b = buildings.get(d.location.building)
        if b is None:
            raise ValueError(
                f"device {d.id!r}: building {d.location.building!r} is not in 'buildings'"
            )
        n = per_building[(b.id, d.kind)]
        usage: Usage = "mall" if d.tags.get("usage") == "mall" else "office"
        if d.kind == "power_meter":
            out[d.id] = PowerMeterParams(
                peak_kw=round(b.floor_area_m2 * _W_PER_M2 / 1000 / n, 1),
                usage=usage,
                cooling_per_c=_COOLING_PER_C,
                heating_per_c=_HEATING_PER_C,
                cooling_balance_c=_COOLING_BALANCE_C,
                heating_balance_c=_HEATING_BALANCE_C,
            )
        elif d.kind == "water_meter":
            out[d.id] = WaterMeterParams(
                peak_m3h=round(b.floor_area_m2 * _M3H_PER_M2 / n, 3),
                usage=usage,
                leak_every_days=_LEAK_EVERY_DAYS if first_water else None,
                leak_nights=_LEAK_NIGHTS,
                leak_m3h=_LEAK_M3H,
            )
            first_water = False
        elif d.kind == "elevator":
            lowest = -b.basement_floors if b.basement_floors else 1
            top = b.floors if b.floors > 1 or lowest < 0 else 2
            out[d.id] = ElevatorParams(lowest_floor=lowest, top_floor=top, lobby_floor=1)
        elif d.kind == "sensor":
            out[d.id] = OutdoorSensorParams()
    return out


_FLOAT_STRUCTS = {"float32": struct.Struct(">f"), "float64": struct.Struct(">d")}


def roundtrip(register: Register) -> Callable[[float], float]:
    """``v -> decode(register, encode(register, v))`` without building the words.

    Back-fill quantises hundreds of thousands of values the way the collector would see them;
    this is the codec's arithmetic (scale, offset, rounding to the type) at a fraction of the
    cost -- the tests check it against the codec. Values the type cannot hold go through the
    codec itself, which raises ValueError.
    """
    scale, offset = register.scale, register.offset

    def exact(v: float) -> float:
        return decode(register, encode(register, v))

    rtype = register.type
    if rtype in _FLOAT_STRUCTS:
        fmt = _FLOAT_STRUCTS[rtype]

        def as_float(v: float) -> float:
            try:
                raw: float = fmt.unpack(fmt.pack((v - offset) / scale))[0]
            except (OverflowError, struct.error):
                return exact(v)
            return raw * scale + offset

        return as_float
    if rtype == "bit":
        return exact
    if rtype not in TYPE_WORDS:  # strings: not numbers
        return exact
    bits = 16 * TYPE_WORDS[rtype]
    lo, hi = (
        (0, 2**bits - 1) if rtype.startswith("uint") else (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
    )
    is_enum = register.enum is not None

    def as_int(v: float) -> float:
        if not math.isfinite(v):
            return exact(v)
        n = round(v if is_enum else (v - offset) / scale)
        if not lo <= n <= hi:
            return exact(v)
        return float(n) if is_enum else float(n) * scale + offset

    return as_int


@dataclass(frozen=True, slots=True)
class _Slot:
    register: Register
    table: str
    offset: int  # index into the table's image
    quantize: Callable[[float], float]


class _Unit:
    """One simulated device: its model, profile and register images."""

    def __init__(
        self, device: Device, profile: Profile, model: DeviceModel, tags: Mapping[str, str]
    ) -> None:
        self.device = device
        self.profile = profile
        self.model = model
        self.tags: Mapping[str, str] = MappingProxyType(dict(tags))
        self.ready = False
        self.served: dict[str, float] = {}
        self._failed: set[str] = set()
        self.base: dict[str, int] = {}
        self.image: dict[str, list[int] | list[bool]] = {}
        self.slots: list[_Slot] = []
        for table in _TABLE_SLOTS:
            regs = [r for r in profile.registers if r.table == table and r.count > 0]
            if not regs:
                continue
            lo = min(r.address for r in regs)
            hi = max(r.address + r.count for r in regs)
            if table in BIT_TABLES:
                # pymodbus keeps bits packed 16 to a register: align the block to a register.
                lo -= lo % 16
                hi += -hi % 16
                self.image[table] = [False] * (hi - lo)
            else:
                self.image[table] = [0] * (hi - lo)
            self.base[table] = lo
            self.slots.extend(_Slot(r, table, r.address - lo, roundtrip(r)) for r in regs)
        self.numeric = [s for s in self.slots if s.register.type != "string"]

    @property
    def unit_id(self) -> int:
        src = self.device.source
        assert isinstance(src, ModbusTcpSource)  # the constructor refuses every other source
        return src.unit_id

    def sample(self, values: Mapping[str, float]) -> list[tuple[_Slot, list[int] | list[bool]]]:
        """Words of every numeric register for the model's values."""
        out: list[tuple[_Slot, list[int] | list[bool]]] = []
        for slot in self.numeric:
            metric = slot.register.metric
            try:
                out.append((slot, encode(slot.register, values.get(metric, 0.0))))
            except (ValueError, TypeError) as exc:
                if metric not in self._failed:  # once per metric, not once per second
                    self._failed.add(metric)
                    log.error("simulated %s: cannot encode %s: %s", self.device.id, metric, exc)
        return out

    def chosen(self, metrics: Collection[str] | None) -> tuple[list[_Slot], bool]:
        """The numeric slots of ``metrics`` (all when None) and whether ``device_up`` is one."""
        if metrics is None:
            return self.numeric, True
        return [s for s in self.numeric if s.register.metric in metrics], DEVICE_UP in metrics

    def readings(
        self, t: datetime, slots: Sequence[_Slot] | None = None, up: bool = True
    ) -> list[Reading]:
        """Readings at ``t`` of every numeric metric (or of ``slots``), plus ``device_up``
        unless ``up`` is false, as the collector would decode them."""
        wanted = None if slots is None else frozenset(s.register.metric for s in slots)
        values = self.model.values(wanted)
        dev, tags = self.device.id, self.tags
        out: list[Reading] = []
        for slot in self.numeric if slots is None else slots:
            reg = slot.register
            try:
                v = slot.quantize(values.get(reg.metric, 0.0))
            except (ValueError, TypeError) as exc:
                if reg.metric not in self._failed:
                    self._failed.add(reg.metric)
                    log.error("simulated %s: cannot encode %s: %s", dev, reg.metric, exc)
                continue
            out.append(Reading(t, dev, reg.metric, v, reg.unit, tags=tags))
        if up:
            out.append(Reading(t, dev, DEVICE_UP, 1.0, "", tags=tags))
        return out

    def write(self) -> None:
        values = self.model.values()
        served: dict[str, float] = {}
        for slot, words in self.sample(values):
            img = self.image[slot.table]
            img[slot.offset : slot.offset + len(words)] = words  # type: ignore[assignment]
            served[slot.register.metric] = decode(slot.register, words)
        self.served = served
        self.ready = True

    def simdevice(self) -> SimDevice:
        blocks: list[list[SimData]] = []
        for table in _TABLE_SLOTS:
            img = self.image.get(table)
            if img is None:
                # An unused table still needs a block; the action answers ILLEGAL ADDRESS.
                if table in BIT_TABLES:
                    blocks.append([SimData(0, values=[False] * 16, datatype=DataType.BITS)])
                else:
                    blocks.append([SimData(0, datatype=DataType.INVALID)])
                continue
            if table in BIT_TABLES:
                data = SimData(
                    self.base[table], values=[False] * len(img), datatype=DataType.BITS,
                    readonly=True,
                )  # fmt: skip
            else:
                data = SimData(
                    self.base[table], values=[0] * len(img), datatype=DataType.REGISTERS,
                    readonly=True,
                )  # fmt: skip
            blocks.append([data])
        return SimDevice(
            self.unit_id,
            simdata=(blocks[0], blocks[1], blocks[2], blocks[3]),
            action=self.action,
        )

    async def action(
        self,
        function_code: int,
        _start_address: int,
        _address: int,
        _count: int,
        registers: list[int],
        set_values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        """Copy the current image into pymodbus' block just before it answers a request."""
        if set_values is not None:
            return ExcCodes.ILLEGAL_FUNCTION
        table = _TABLE_OF_FC.get(function_code)
        img = self.image.get(table) if table else None
        if img is None:
            return ExcCodes.ILLEGAL_ADDRESS
        if not self.ready:
            return ExcCodes.DEVICE_BUSY
        if table in BIT_TABLES:
            # pymodbus keeps bits packed 16 to a register, lowest address in the lowest bit.
            packed = SimUtils.bitsToRegisters([bool(b) for b in img])
            registers[: len(packed)] = packed
        else:
            registers[: len(img)] = img
        return None


async def _no_such_unit(
    _fc: int, _sa: int, _a: int, _c: int, _r: list[int], _v: list[int] | list[bool] | None
) -> ExcCodes | None:
    return ExcCodes.GATEWAY_NO_RESPONSE


def _unknown_units(units: list[_Unit]) -> SimDevice:
    """Unit id 0 answers for every id not configured, as a gateway with nothing behind it."""
    blocks: list[list[SimData]] = []
    for table in _TABLE_SLOTS:
        spans = [
            (u.base[table], u.base[table] + len(u.image[table])) for u in units if table in u.image
        ]
        if table in BIT_TABLES:
            lo, hi = (min(a for a, _ in spans), max(b for _, b in spans)) if spans else (0, 16)
            blocks.append([SimData(lo, values=[False] * (hi - lo), datatype=DataType.BITS)])
        else:
            lo, hi = (min(a for a, _ in spans), max(b for _, b in spans)) if spans else (0, 1)
            blocks.append([SimData(lo, values=[0] * (hi - lo), datatype=DataType.REGISTERS)])
    return SimDevice(0, simdata=(blocks[0], blocks[1], blocks[2], blocks[3]), action=_no_such_unit)


def _aware(name: str, t: datetime) -> float:
    if t.tzinfo is None or t.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got {t!r}")
    return t.timestamp()


class SimulatedBuilding:
    """The site of a config, simulated: models, Modbus servers and back-fill history.

    Typical use (demo)::

        sim = SimulatedBuilding(config, seed=1)
        for batch in sim.history(now - timedelta(days=35), now, timedelta(minutes=5)):
            store.write(batch)
        ports = await sim.start(now=now)
        live_config = with_ports(config, ports)
        task = asyncio.create_task(sim.run())

    ``params`` overrides the model parameters of individual devices (see
    :func:`default_params` for the defaults).
    """

    def __init__(
        self,
        config: SiteConfig,
        *,
        seed: int = 1,
        params: Mapping[str, ModelParams] | None = None,
        profile_loader: Callable[[str], Profile] = load_profile,
    ) -> None:
        self.config = config
        self.seed = seed
        self._clock = LocalClock(ZoneInfo(config.site.timezone))
        chosen = default_params(config)
        for dev_id, p in (params or {}).items():
            if dev_id not in chosen and all(d.id != dev_id for d in config.devices):
                raise KeyError(f"params for unknown device {dev_id!r}")
            chosen[dev_id] = p
        self._units: dict[str, _Unit] = {}
        self._groups: dict[tuple[str, int], list[_Unit]] = {}
        # MQTT sensors publish to a broker rather than answer polls: simulated apart.
        self.mqtt_sensors = MqttSensors(config, seed)
        unsupported = [
            d.id for d in config.devices if d.kind not in _MODELS and not simulated_by_mqtt(d)
        ]
        if unsupported:
            raise ValueError(
                f"no behaviour model for device(s) {', '.join(unsupported)} "
                f"(kinds with a model: {', '.join(_MODELS)})"
            )
        for d in config.devices:
            if simulated_by_mqtt(d):
                continue
            if not isinstance(d.source, ModbusTcpSource):
                raise ValueError(
                    f"device {d.id!r}: the simulator serves Modbus TCP only, not {d.source.type}"
                )
            profile = profile_loader(d.source.profile)
            if profile.kind != d.kind:
                log.warning(
                    "device %s is a %s but profile %s is for %s; metrics the model does not "
                    "produce read as 0", d.id, d.kind, profile.name, profile.kind,
                )  # fmt: skip
            model = _make_model(d, chosen[d.id], self._clock, seed)
            unit = _Unit(d, profile, model, device_tags(config.site.id, d))
            self._units[d.id] = unit
            src = d.source
            key = (src.host, src.port)
            group = self._groups.setdefault(key, [])
            clash = [u.device.id for u in group if u.unit_id == d.source.unit_id]
            if clash:
                raise ValueError(
                    f"devices {clash[0]!r} and {d.id!r} share {key[0]}:{key[1]} "
                    f"and unit id {d.source.unit_id}"
                )
            group.append(unit)
        self._servers: list[ModbusTcpServer] = []
        self._ports: dict[str, int] = {}
        self._stop = asyncio.Event()

    # ---- models

    @property
    def device_ids(self) -> list[str]:
        return list(self._units)

    def model(self, device_id: str) -> DeviceModel:
        """The behaviour model of a device (for tests and demos)."""
        return self._unit(device_id).model

    def values(self, device_id: str) -> dict[str, float]:
        """What a collector reading the device now would decode, by metric."""
        unit = self._unit(device_id)
        if not unit.ready:
            raise RuntimeError("update() the building before reading values")
        return dict(unit.served)

    def _unit(self, device_id: str) -> _Unit:
        try:
            return self._units[device_id]
        except KeyError:
            raise KeyError(f"no simulated device {device_id!r}") from None

    def update(self, now: datetime) -> None:
        """Advance every model to ``now`` and write the register images.

        Models never go back: an earlier ``now`` than a previous one serves the later state.
        """
        t = _aware("now", now)
        for unit in self._units.values():
            unit.model.advance(t)
            unit.write()

    def inject_fault(
        self,
        device_id: str,
        code: int,
        duration: timedelta | float,
        *,
        entrapment: bool = False,
    ) -> None:
        """Make an elevator fail now (at the last :meth:`update`) for ``duration``.

        The car stops and goes out of service with ``fault_code`` = ``code``; with
        ``entrapment`` a passenger is stuck between floors until the fault ends. The registers
        show it immediately.
        """
        unit = self._unit(device_id)
        model = unit.model
        if not isinstance(model, ElevatorModel):
            raise ValueError(f"device {device_id!r} is a {unit.device.kind}, not an elevator")
        seconds = duration.total_seconds() if isinstance(duration, timedelta) else float(duration)
        model.inject_fault(code, seconds, entrapment=entrapment)
        unit.write()

    def history(
        self,
        start: datetime,
        end: datetime,
        step: timedelta = timedelta(minutes=5),
        metrics: Collection[str] | None = None,
        polled: Collection[str] = (),
    ) -> Iterator[Sequence[Reading]]:
        """Readings every ``step`` from ``start`` (included) to ``end`` (excluded), one batch
        (a list over all devices) per step, then the models stand at ``end``.

        Each batch holds, per device, every numeric metric of its profile -- decoded from the
        register words the collector would read, with the profile's units and the device's tags
        -- plus ``device_up`` = 1; with ``metrics`` only those (``device_up`` included only if
        named); the MQTT sensors' readings (:mod:`simulator.mqtt_sensors`) are in them too.
        Counters carry on from the last batch into live updates after ``end``, whatever
        the step. The models must not already be past ``start``: call this before
        :meth:`update` (or with ``start`` at or after the last update).

        ``polled`` metrics are sampled at each device's own ``poll_interval`` instead -- at the
        multiples of it (since the epoch) in ``[start, end)``, as a collector polling all along
        would have stored them -- and left out of the step batches. They come as
        :class:`~store.columnar.ReadingBatch` batches, each covering up to :data:`POLLED_CHUNK`
        of simulated time, between the step batches; they are only for models whose values of
        them are piecewise constant between events (:attr:`ElevatorModel.STATE_METRICS`), so a
        month of 5-second samples costs array work, not a model step per sample.
        """
        t0 = _aware("start", start)
        t1 = _aware("end", end)
        if not t1 > t0:
            raise ValueError(f"history end {end} must be after start {start}")
        if not step > timedelta(0):
            raise ValueError(f"history step must be positive, got {step}")
        ahead = [u.device.id for u in self._units.values() if (u.model.time or -math.inf) > t0]
        if ahead:
            raise ValueError(
                f"history must start at or after the simulated time already reached "
                f"(devices {', '.join(ahead)}); generate history before live updates"
            )
        wanted = None if metrics is None else frozenset(metrics)
        by_poll = frozenset(polled)
        for u in self._units.values():
            names = {s.register.metric for s in u.numeric} & by_poll
            states = ElevatorModel.STATE_METRICS if isinstance(u.model, ElevatorModel) else ()
            if names - set(states):
                raise ValueError(
                    f"device {u.device.id!r}: cannot sample {', '.join(sorted(names))} at the "
                    f"poll interval (metrics that can be: {', '.join(states) or 'none'})"
                )
        return self._history(start.astimezone(UTC), end.astimezone(UTC), step, wanted, by_poll)

    def _history(
        self,
        start: datetime,
        end: datetime,
        step: timedelta,
        metrics: frozenset[str] | None,
        polled: frozenset[str],
    ) -> Iterator[Sequence[Reading]]:
        # Every model starts at ``start`` (counters integrate from their first instant);
        # devices with nothing wanted are then not sampled, and the final update moves them on.
        for unit in self._units.values():
            unit.model.advance(start.timestamp())
        units = []
        dense: list[tuple[_Unit, ElevatorModel, list[_Slot]]] = []
        for u in self._units.values():
            slots, up = u.chosen(metrics)
            by_poll = [s for s in u.numeric if s.register.metric in polled]
            if by_poll:
                assert isinstance(u.model, ElevatorModel)  # history() checked
                dense.append((u, u.model, by_poll))
                slots = [s for s in slots if s.register.metric not in polled]
            if slots or up:
                units.append((u, slots, up))
        for _, model, _ in dense:
            model.track_states()
        try:
            n = 0
            t = start
            chunk_from = start
            while t < end:
                ts = t.timestamp()
                batch: list[Reading] = []
                for u, slots, up in units:
                    u.model.advance(ts)
                    batch.extend(u.readings(t, slots, up))
                batch.extend(self.mqtt_sensors.readings(t, metrics))
                yield batch
                if dense and t - chunk_from >= POLLED_CHUNK:
                    for u, _, _ in dense:  # a device not in the step batches stands behind
                        u.model.advance(ts)
                    yield self._polled(dense, chunk_from, t)
                    chunk_from = t
                n += 1
                t = start + n * step
            self.update(end)
            if dense:
                yield self._polled(dense, chunk_from, end)
        finally:
            for _, model, _ in dense:
                model.track_states(False)

    def _polled(
        self,
        dense: Sequence[tuple[_Unit, ElevatorModel, Sequence[_Slot]]],
        start: datetime,
        end: datetime,
    ) -> ReadingBatch:
        """The polled metrics of ``dense`` at every poll of ``[start, end)``; the models stand
        at ``end`` or later."""
        lo, hi = to_us(start), to_us(end)
        tables: list[pa.Table] = []
        for u, model, slots in dense:
            every = u.device.poll_interval // timedelta(microseconds=1)
            first = -(-lo // every) * every  # the first multiple of the interval at or after lo
            times = np.arange(first, hi, every, dtype=np.int64)
            if not len(times):
                continue
            # The float seconds the live model compares with: us / 10**6, as datetime does.
            values = model.state_values(times / 1e6)
            for slot in slots:
                column = _quantized(u, slot, values[slot.register.metric])
                if column is not None:
                    tables.append(_columns(u, slot.register, times, column))
        if not tables:
            return ReadingBatch(SCHEMA.empty_table())
        return ReadingBatch(pa.concat_tables(tables))

    # ---- servers

    @property
    def ports(self) -> dict[str, int]:
        """Port each device is served on, after :meth:`start`."""
        return dict(self._ports)

    async def start(
        self, host: str = "127.0.0.1", *, now: datetime | None = None, free_ports: bool = False
    ) -> dict[str, int]:
        """Start one Modbus TCP server per distinct (host, port) of the config; device -> port.

        Servers listen on ``host`` whatever host the config names. ``now`` updates the models
        first; without it devices answer DEVICE BUSY until the first :meth:`update`.
        """
        if self._servers:
            raise RuntimeError("the simulated building is already started")
        if now is not None:
            self.update(now)
        self._stop = asyncio.Event()
        try:
            for (cfg_host, cfg_port), units in self._groups.items():
                devices = [u.simdevice() for u in units] + [_unknown_units(units)]
                want = 0 if free_ports else cfg_port
                server, port = await _listen(devices, host, want)
                if want and port != want:
                    log.info(
                        "simulator: %s:%d is taken, serving %s on %s:%d", host, want,
                        ", ".join(u.device.id for u in units), host, port,
                    )  # fmt: skip
                log.debug("simulator: config %s:%d served on %s:%d", cfg_host, cfg_port, host, port)
                self._servers.append(server)
                for u in units:
                    self._ports[u.device.id] = port
        except BaseException:
            await self.stop()
            raise
        return dict(self._ports)

    async def run(self, interval: float = 1.0) -> None:
        """Update from the wall clock every ``interval`` seconds until :meth:`stop`."""
        if not interval > 0:
            raise ValueError("interval must be positive")
        failing = False
        while not self._stop.is_set():
            try:
                self.update(datetime.now(UTC))
                if failing:
                    log.info("simulator: updates work again")
                failing = False
            except Exception:
                if not failing:  # once when it starts failing, once on recovery
                    log.exception("simulator: update failed; serving the last values")
                failing = True
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), interval)

    async def stop(self) -> None:
        """Stop :meth:`run` and close every server."""
        self._stop.set()
        servers, self._servers = self._servers, []
        for server in servers:
            with contextlib.suppress(Exception):
                await _shutdown(server)
        self._ports.clear()

    async def __aenter__(self) -> SimulatedBuilding:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.stop()


def _quantized(
    unit: _Unit, slot: _Slot, values: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64] | None:
    """``values`` as the collector decodes them (through the register); None if one cannot be
    encoded, logged once per metric like a live value."""
    distinct, where = np.unique(values, return_inverse=True)
    try:
        decoded = np.array([slot.quantize(float(v)) for v in distinct], dtype=np.float64)
    except (ValueError, TypeError) as exc:
        if slot.register.metric not in unit._failed:
            unit._failed.add(slot.register.metric)
            log.error(
                "simulated %s: cannot encode %s: %s", unit.device.id, slot.register.metric, exc
            )
        return None
    out: npt.NDArray[np.float64] = decoded[where.reshape(-1)]
    return out


def _columns(
    unit: _Unit, register: Register, times: npt.NDArray[np.int64], values: npt.NDArray[np.float64]
) -> pa.Table:
    """One device's samples of one metric as a table of :data:`store.columnar.SCHEMA`: the
    device's tags, the register's unit, good quality -- what the collector writes per poll."""
    n = len(times)
    tags = pa.DictionaryArray.from_arrays(
        pa.array(np.zeros(n, dtype=np.int32)), pa.array([tags_json(unit.tags)], pa.string())
    )
    return pa.Table.from_arrays(
        [
            pa.array(times, pa.int64()),
            pa.repeat(pa.scalar(unit.device.id, pa.string()), n),
            pa.repeat(pa.scalar(register.metric, pa.string()), n),
            pa.array(values, pa.float64()),
            pa.repeat(pa.scalar(register.unit, pa.string()), n),
            pa.array(np.full(n, int(Quality.GOOD), dtype=np.uint8), pa.uint8()),
            tags,
        ],
        schema=SCHEMA,
    )


async def _listen(devices: list[SimDevice], host: str, port: int) -> tuple[ModbusTcpServer, int]:
    """Start a server on ``port``, or on a free port if that one cannot be bound."""
    for attempt in (port, 0) if port else (0,):
        server = ModbusTcpServer(devices, address=(host, attempt))
        try:
            await server.serve_forever(background=True)
        except RuntimeError:
            with contextlib.suppress(Exception):
                await _shutdown(server)
            if attempt == 0:
                raise OSError(f"cannot listen on {host}") from None
            continue
        sockets = getattr(server.transport, "sockets", None)
        if not sockets:
            await _shutdown(server)
            raise OSError(f"server on {host}:{attempt} has no listening socket")
        return server, int(sockets[0].getsockname()[1])
    raise OSError(f"cannot listen on {host}")  # pragma: no cover - loop always returns/raises


async def _shutdown(server: ModbusTcpServer) -> None:
    await server.shutdown()  # type: ignore[no-untyped-call]  # pymodbus leaves it unannotated


def _make_model(device: Device, params: ModelParams, clock: LocalClock, seed: int) -> DeviceModel:
    maker = _MODELS[device.kind]
    return maker(device.id, params, clock, seed)


def _power(dev: str, p: ModelParams, clock: LocalClock, seed: int) -> DeviceModel:
    if not isinstance(p, PowerMeterParams):
        raise TypeError(f"device {dev!r} is a power meter: give PowerMeterParams")
    return PowerMeterModel(dev, p, clock, seed)


def _elevator(dev: str, p: ModelParams, clock: LocalClock, seed: int) -> DeviceModel:
    if not isinstance(p, ElevatorParams):
        raise TypeError(f"device {dev!r} is an elevator: give ElevatorParams")
    return ElevatorModel(dev, p, clock, seed)


def _water(dev: str, p: ModelParams, clock: LocalClock, seed: int) -> DeviceModel:
    if not isinstance(p, WaterMeterParams):
        raise TypeError(f"device {dev!r} is a water meter: give WaterMeterParams")
    return WaterMeterModel(dev, p, clock, seed)


def _sensor(dev: str, p: ModelParams, clock: LocalClock, seed: int) -> DeviceModel:
    if not isinstance(p, OutdoorSensorParams):
        raise TypeError(f"device {dev!r} is a sensor: give OutdoorSensorParams")
    return OutdoorSensorModel(dev, p, clock, seed)


_MODELS: dict[str, Callable[[str, ModelParams, LocalClock, int], DeviceModel]] = {
    "power_meter": _power,
    "elevator": _elevator,
    "water_meter": _water,
    "sensor": _sensor,
}
