"""Behaviour models of the simulated devices: what a meter or an elevator would report.

Each model is advanced to an instant passed in (POSIX seconds; nothing here reads a clock) and
then reports the values of its profile's metrics. Models only move forward: advancing to an
earlier instant keeps the current state, so counters never run backwards.

Determinism: instantaneous values (power, voltages, flow) are pure functions of the seed and
the instant. Counters integrate them on a fixed 5-minute grid (power and flow are linear
between grid knots, so the integral is exact), which makes a counter depend on the seed, the
instant and the instant the model was first advanced to -- never on how often it was sampled.
The elevator is a sequence of trips drawn from a seeded random stream in time order; its state
likewise depends only on the seed, the first instant and the current instant. Its service mode,
fault code and entrapment change only at faults and maintenance windows, so back-fill can record
those spans while the model runs and sample the three metrics at any rate afterwards
(:meth:`ElevatorModel.state_values`) without stepping the model at that rate. The outdoor
temperature (:class:`Weather`) depends on the seed and the instant only, so the outdoor sensor
and the air conditioning in the power meters' load see the same weather.
"""

from __future__ import annotations

import math
import random
from collections import deque
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar, Literal, Protocol

import numpy as np
import numpy.typing as npt

from simulator.noise import LocalClock, key_of, signed, smooth, smooth3, unit

__all__ = [
    "DeviceModel",
    "ElevatorModel",
    "ElevatorParams",
    "LeakEpisode",
    "OutdoorSensorModel",
    "OutdoorSensorParams",
    "PowerMeterModel",
    "PowerMeterParams",
    "StateSpan",
    "Usage",
    "WaterMeterModel",
    "WaterMeterParams",
    "Weather",
    "WeatherParams",
]

Usage = Literal["office", "mall"]

KNOT = 300.0  # seconds between the knots counters are integrated over
_H = 3600.0
_DAY = 86400.0

# Share of the variable load in use, by local hour (value at the start of the hour; linear in
# between). Offices: arrivals 8-10, a dip at lunch, peak mid-afternoon (cooling), gone by 22.
_OFFICE_ACTIVITY = (
    0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.04, 0.18, 0.55, 0.85, 0.93, 0.95,
    0.88, 0.92, 1.0, 1.0, 0.96, 0.88, 0.62, 0.40, 0.28, 0.16, 0.06, 0.01,
)  # fmt: skip
# Malls: cleaning and deliveries from 7, doors open 10-22, busiest in the afternoon/evening.
_MALL_ACTIVITY = (
    0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.08, 0.2, 0.42, 0.75, 0.84,
    0.9, 0.9, 0.95, 1.0, 1.0, 0.97, 0.95, 0.93, 0.86, 0.62, 0.22, 0.04,
)  # fmt: skip
_ACTIVITY: dict[str, tuple[float, ...]] = {"office": _OFFICE_ACTIVITY, "mall": _MALL_ACTIVITY}
# Weekends: offices mostly empty; a mall tower's podium keeps trading but the office floors
# above it (and their cooling) are off, so its landlord load is still a little lower.
_WEEKEND = {"office": 0.3, "mall": 0.85}


def _activity(table: tuple[float, ...], hour: float) -> float:
    h = int(hour)
    a = table[h]
    return a + (table[(h + 1) % 24] - a) * (hour - h)


class DeviceModel(Protocol):
    """What the building needs from a behaviour model."""

    @property
    def time(self) -> float | None:
        """Instant the model was last advanced to (POSIX seconds); None before the first."""
        ...

    def advance(self, t: float) -> None:
        """Move the model to instant ``t``; an earlier instant keeps the current state."""
        ...

    def values(self, metrics: Collection[str] | None = None) -> dict[str, float]:
        """Engineering values of the model's metrics at :attr:`time`.

        ``metrics`` names the ones the caller needs (all when None); a model may return more.
        """
        ...


# --------------------------------------------------------------------------- weather

_YEAR = 365.2425
_EPOCH_TO_2000 = 10957  # days from 1970-01-01 to 2000-01-01


@dataclass(frozen=True, slots=True)
class WeatherParams:
    """Outdoor air temperature of the site: a seasonal wave, a daily wave and passing weather.

    The defaults are Shanghai-like: daily means near 5 °C in late January and 30 °C in late
    July, about ±3.5 °C between dawn and mid-afternoon, and fronts that move the daily mean by
    a few degrees over two to four days (so a month holds warmer and cooler days, which is what
    lets a baseline model tell weather from everything else).
    """

    annual_mean_c: float = 17.5
    annual_swing_c: float = 12.5  # half the gap between the warmest and the coldest daily mean
    coldest_day: float = 20.0  # day of the year (1 = 1 January) of the coldest daily mean
    daily_swing_c: float = 3.5
    warmest_hour: float = 14.5  # local hour of the daily maximum
    front_c: float = 3.0  # amplitude of the multi-day swings

    def __post_init__(self) -> None:
        if self.annual_swing_c < 0 or self.daily_swing_c < 0 or self.front_c < 0:
            raise ValueError("weather swings must not be negative")
        if not 0 <= self.warmest_hour < 24:
            raise ValueError(f"warmest_hour must be in [0, 24), got {self.warmest_hour}")


class Weather:
    """Outdoor temperature as a pure function of the seed and the instant.

    Keyed by the seed alone (not by a device), so every model built with the same seed -- the
    outdoor sensor and each power meter's air conditioning -- sees the same weather.
    """

    def __init__(self, params: WeatherParams, clock: LocalClock, seed: int = 1) -> None:
        self.params = params
        self._clock = clock
        self._k_front = key_of(seed, "weather", "front")
        self._k_day = key_of(seed, "weather", "day")
        self._coldest = _EPOCH_TO_2000 + params.coldest_day - 1.0

    def seasonal_c(self, t: float) -> float:
        """The climate's daily mean at ``t``, without passing weather."""
        return self._seasonal(self._clock.local(t))

    def daily_wave_c(self, t: float) -> float:
        """Offset from the daily mean by time of day: lowest before dawn, highest mid-afternoon."""
        return self._wave(self._clock.local(t))

    def _seasonal(self, local: float) -> float:
        p = self.params
        phase = 2.0 * math.pi * (local / _DAY - self._coldest) / _YEAR
        return p.annual_mean_c - p.annual_swing_c * math.cos(phase)

    def _wave(self, local: float) -> float:
        p = self.params
        hour = (local % _DAY) / _H
        return p.daily_swing_c * math.cos(2.0 * math.pi * (hour - p.warmest_hour) / 24.0)

    def front_c(self, t: float) -> float:
        """Passing weather: swings over a few days plus a smaller day-to-day one."""
        a = self.params.front_c
        return a * smooth(self._k_front, t, 3.0 * _DAY) + 0.35 * a * smooth(self._k_day, t, _DAY)

    def temperature_c(self, t: float) -> float:
        """Outdoor air temperature at ``t`` in °C."""
        local = self._clock.local(t)
        return self._seasonal(local) + self._wave(local) + self.front_c(t)


@dataclass(frozen=True, slots=True)
class OutdoorSensorParams:
    """An outdoor temperature and humidity transmitter (e.g. on the roof)."""

    weather: WeatherParams = WeatherParams()
    noise_c: float = 0.1  # reading jitter

    def __post_init__(self) -> None:
        if self.noise_c < 0:
            raise ValueError("noise_c must not be negative")


class OutdoorSensorModel:
    """Outdoor temperature (the site's :class:`Weather` plus reading jitter) and relative
    humidity, which runs opposite to the daily temperature wave like real outdoor air."""

    def __init__(
        self, device_id: str, params: OutdoorSensorParams, clock: LocalClock, seed: int = 1
    ) -> None:
        self.device_id = device_id
        self.params = params
        self.weather = Weather(params.weather, clock, seed)
        self._k_jitter = key_of(seed, device_id, "sensor", "jitter")
        self._k_rh = key_of(seed, device_id, "sensor", "rh")
        self._t: float | None = None

    @property
    def time(self) -> float | None:
        return self._t

    def advance(self, t: float) -> None:
        if self._t is None or t > self._t:
            self._t = t

    def values(self, metrics: Collection[str] | None = None) -> dict[str, float]:
        t = self._t
        if t is None:
            raise RuntimeError("advance() the model before reading it")
        w = self.weather
        temp = w.temperature_c(t) + self.params.noise_c * signed(self._k_jitter, int(t))
        rh = 72.0 + 12.0 * smooth(self._k_rh, t, 2.0 * _DAY) - 2.5 * w.daily_wave_c(t)
        return {"outdoor_temperature": temp, "outdoor_humidity": min(max(rh, 15.0), 100.0)}


# --------------------------------------------------------------------------- power meter


@dataclass(frozen=True, slots=True)
class PowerMeterParams:
    """Shape of a three-phase supply's load."""

    peak_kw: float = 200.0
    usage: Usage = "office"
    base_fraction: float = 0.2  # night base load (lighting, servers, pumps) as share of peak
    weekend_factor: float | None = None  # share of the weekday variable load; default by usage
    nominal_voltage: float = 228.0  # phase-to-neutral
    initial_kwh: float | None = None  # reading of the energy counter at the first instant
    # Air conditioning on top of the activity curve, as a share of peak_kw per °C of outdoor
    # temperature above the cooling / below the heating balance point, at full activity. Zero
    # (the default) leaves the load independent of the weather.
    cooling_per_c: float = 0.0
    heating_per_c: float = 0.0
    cooling_balance_c: float = 18.0
    heating_balance_c: float = 12.0
    hvac_idle: float = 0.15  # share of the air-conditioning load left when the building is empty
    weather: WeatherParams = WeatherParams()
    # An energy-saving measure: from saving_from on the air-conditioning load is this much lower.
    saving_from: datetime | None = None
    saving_fraction: float = 0.0

    def __post_init__(self) -> None:
        if not self.peak_kw > 0:
            raise ValueError(f"peak_kw must be positive, got {self.peak_kw}")
        if not 0 <= self.base_fraction < 1:
            raise ValueError(f"base_fraction must be in [0, 1), got {self.base_fraction}")
        if self.weekend_factor is not None and not 0 <= self.weekend_factor <= 2:
            raise ValueError(f"weekend_factor must be in [0, 2], got {self.weekend_factor}")
        if self.cooling_per_c < 0 or self.heating_per_c < 0:
            raise ValueError("cooling_per_c and heating_per_c must not be negative")
        if self.heating_balance_c > self.cooling_balance_c:
            raise ValueError("heating_balance_c must not be above cooling_balance_c")
        if not 0 <= self.hvac_idle <= 1:
            raise ValueError(f"hvac_idle must be in [0, 1], got {self.hvac_idle}")
        if not 0 <= self.saving_fraction < 1:
            raise ValueError(f"saving_fraction must be in [0, 1), got {self.saving_fraction}")
        if self.saving_from is not None and self.saving_from.tzinfo is None:
            raise ValueError("saving_from must be timezone-aware")


_ENERGY_AND_POWER = frozenset({"active_power", "energy_import"})


class PowerMeterModel:
    """Three-phase power meter on a mall or office supply.

    Active power follows the daily activity curve between the base load and the peak, with
    day-to-day and 5-minute variation plus 1% reading jitter. With ``cooling_per_c`` or
    ``heating_per_c`` an air-conditioning load follows the outdoor temperature (the site's
    :class:`Weather`) beyond the balance points, scaled by activity; from ``saving_from`` on
    it is ``saving_fraction`` lower -- a measure whose true saving is known. Voltages sag a little
    under load, power factor improves with load, currents satisfy ``P = sum(U_i * I_i * pf)``
    and ``Q = P * tan(acos(pf))``; ``energy_import`` is the exact integral of the smoothed
    power (the jitter is measurement noise, not consumption).
    """

    def __init__(
        self, device_id: str, params: PowerMeterParams, clock: LocalClock, seed: int = 1
    ) -> None:
        self.device_id = device_id
        self.params = params
        self._clock = clock
        self._table = _ACTIVITY[params.usage]
        wf = params.weekend_factor
        self._weekend = _WEEKEND[params.usage] if wf is None else wf

        def k(n: int) -> int:
            return key_of(seed, device_id, "power", str(n))

        self._k_day = k(1)
        self._k_knot = k(2)
        self._k_jitter = k(3)
        self._k_pf = k(4)
        self._k_freq = k(5)
        self._k_phase = k(16)
        self._k_volt = k(32)
        # Each phase sits a little off nominal, fixed per meter (transformer tap, cable runs).
        self._v_off = tuple(1.5 * signed(k(48), i) for i in range(3))
        self._initial = (
            params.initial_kwh
            if params.initial_kwh is not None
            else 200_000.0 + 800_000.0 * unit(k(64), 0)
        )
        self._hvac = params.cooling_per_c > 0 or params.heating_per_c > 0
        self.weather = Weather(params.weather, clock, seed)
        self._saving_from = (
            params.saving_from.timestamp() if params.saving_from is not None else math.inf
        )
        self._knots: dict[int, float] = {}
        self._t: float | None = None
        self._k = 0  # energy is integrated up to knot self._k ...
        self._e_k = 0.0  # ... where it reads this many kWh

    @property
    def time(self) -> float | None:
        return self._t

    def _knot_kw(self, k: int) -> float:
        p = self._knots.get(k)
        if p is not None:
            return p
        t = k * KNOT
        _, hour, weekday = self._clock.fields(t)
        a = _activity(self._table, hour)
        if weekday >= 5:
            a *= self._weekend
        base = self.params.base_fraction
        p = self.params.peak_kw * (base + (1.0 - base) * a)
        p *= 1.0 + 0.06 * smooth(self._k_day, t, _DAY) + 0.03 * signed(self._k_knot, k)
        if self._hvac:
            p += self.hvac_kw(t, a)
        p = max(p, 0.0)
        if len(self._knots) > 64:
            self._knots.clear()
        self._knots[k] = p
        return p

    def hvac_kw(self, t: float, activity: float) -> float:
        """Air-conditioning load at ``t`` for a building this busy (0..1), after any saving."""
        p = self.params
        temp = self.weather.temperature_c(t)
        degrees = p.cooling_per_c * max(temp - p.cooling_balance_c, 0.0) + p.heating_per_c * max(
            p.heating_balance_c - temp, 0.0
        )
        kw = p.peak_kw * degrees * (p.hvac_idle + (1.0 - p.hvac_idle) * activity)
        return kw * (1.0 - p.saving_fraction) if t >= self._saving_from else kw

    def mean_kw(self, t: float) -> float:
        """Smoothed active power at ``t`` (what the energy counter integrates), in kW."""
        k = math.floor(t / KNOT)
        p0 = self._knot_kw(k)
        return p0 + (self._knot_kw(k + 1) - p0) * (t / KNOT - k)

    def advance(self, t: float) -> None:
        if self._t is None:
            self._k = math.floor(t / KNOT)
            self._e_k = self._initial
            self._t = t
            return
        if t <= self._t:
            return
        while (self._k + 1) * KNOT <= t:
            self._e_k += (self._knot_kw(self._k) + self._knot_kw(self._k + 1)) * KNOT / 2 / _H
            self._k += 1
        self._t = t

    def energy_kwh(self) -> float:
        """Energy counter at :attr:`time`."""
        if self._t is None:
            raise RuntimeError("advance() the model before reading it")
        t0 = self._k * KNOT
        return (
            self._e_k + (self._knot_kw(self._k) + self.mean_kw(self._t)) * (self._t - t0) / 2 / _H
        )

    def values(self, metrics: Collection[str] | None = None) -> dict[str, float]:
        t = self._t
        if t is None:
            raise RuntimeError("advance() the model before reading it")
        p_mean = self.mean_kw(t)
        p = p_mean * (1.0 + 0.01 * signed(self._k_jitter, int(t)))
        if metrics is not None and _ENERGY_AND_POWER.issuperset(metrics):
            # What a long back-fill stores: skip the phase quantities nobody reads.
            return {"active_power": p, "energy_import": self.energy_kwh()}
        load = min(p_mean / self.params.peak_kw, 1.2)
        pf = 0.86 + 0.1 * min(load, 1.0) + 0.01 * smooth(self._k_pf, t, 600.0)
        pf = min(max(pf, 0.85), 0.98)
        shares = [1.0 + 0.04 * n for n in smooth3(self._k_phase, t, _H)]
        total = sum(shares)
        v_load = self.params.nominal_voltage + 2.0 - 4.0 * load  # sags a little under load
        wobble = smooth3(self._k_volt, t, 120.0)
        out: dict[str, float] = {}
        for i, ph in enumerate("abc"):
            v = v_load + self._v_off[i] + 0.8 * wobble[i]
            out[f"voltage_{ph}"] = v
            out[f"current_{ph}"] = p * shares[i] / total * 1000.0 / (v * pf)
        out["active_power"] = p
        out["reactive_power"] = p * math.sqrt(1.0 - pf * pf) / pf
        out["power_factor"] = pf
        out["frequency"] = 50.0 + 0.02 * smooth(self._k_freq, t, 30.0)
        out["energy_import"] = self.energy_kwh()
        return out


# --------------------------------------------------------------------------- water meter


@dataclass(frozen=True, slots=True)
class LeakEpisode:
    """A leak at a fixed time: constant extra flow from ``start`` to ``end``."""

    start: datetime
    end: datetime
    flow_m3h: float = 0.3

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("LeakEpisode start and end must be timezone-aware")
        if not self.end > self.start:
            raise ValueError("LeakEpisode end must be after start")
        if not self.flow_m3h > 0:
            raise ValueError("LeakEpisode flow_m3h must be positive")


@dataclass(frozen=True, slots=True)
class WaterMeterParams:
    """Water use of a building or tenant supply, and its leaks.

    A recurring leak starts at 22:00 local time every ``leak_every_days`` days (phase chosen by
    the seed) and stops at 08:00 after ``leak_nights`` nights, so any history of
    ``leak_every_days + leak_nights`` days holds a complete episode; ``leaks`` adds leaks at
    fixed times. Leak flow is constant over whole 5-minute grid intervals.
    """

    peak_m3h: float = 3.0
    usage: Usage = "office"
    weekend_factor: float | None = None
    night_draws_per_hour: float = 0.3  # short draws (guards, cleaners) when the building sleeps
    leak_m3h: float = 0.3
    leak_every_days: int | None = None  # None: no recurring leak
    leak_nights: int = 5
    leaks: tuple[LeakEpisode, ...] = ()
    initial_m3: float | None = None

    def __post_init__(self) -> None:
        if not self.peak_m3h > 0:
            raise ValueError(f"peak_m3h must be positive, got {self.peak_m3h}")
        if self.leak_every_days is not None:
            if not self.leak_nights >= 1:
                raise ValueError("leak_nights must be at least 1")
            if not self.leak_every_days > self.leak_nights:
                raise ValueError("leak_every_days must exceed leak_nights")
            if not self.leak_m3h > 0:
                raise ValueError("leak_m3h must be positive")
        if self.night_draws_per_hour < 0:
            raise ValueError("night_draws_per_hour must not be negative")


_LEAK_START_H = 22.0
_LEAK_END_H = 8.0


class WaterMeterModel:
    """Water meter: daytime use by the activity curve, zero flow at night apart from rare
    short draws, plus leaks (constant extra flow) that make the minimum night flow non-zero.

    ``volume`` is the exact integral of ``flow_rate``.
    """

    def __init__(
        self, device_id: str, params: WaterMeterParams, clock: LocalClock, seed: int = 1
    ) -> None:
        self.device_id = device_id
        self.params = params
        self._clock = clock
        self._table = _ACTIVITY[params.usage]
        wf = params.weekend_factor
        self._weekend = _WEEKEND[params.usage] if wf is None else wf

        def k(n: int) -> int:
            return key_of(seed, device_id, "water", str(n))

        self._k_knot = k(1)
        self._k_draw = (k(2), k(3), k(4), k(5))
        self._k_day = k(6)
        every = params.leak_every_days
        self._leak_phase = int(unit(k(7), 0) * every) if every else 0
        self._fixed = tuple(
            (e.start.timestamp(), e.end.timestamp(), e.flow_m3h) for e in params.leaks
        )
        self._draw_p = params.night_draws_per_hour * KNOT / _H
        self._initial = (
            params.initial_m3
            if params.initial_m3 is not None
            else 5_000.0 + 40_000.0 * unit(k(8), 0)
        )
        self._knots: dict[int, float] = {}
        self._t: float | None = None
        self._k = 0
        self._v_k = 0.0

    @property
    def time(self) -> float | None:
        return self._t

    def _base(self, k: int) -> float:
        """Use at knot ``k`` in m3/h, without draws and leaks."""
        b = self._knots.get(k)
        if b is not None:
            return b
        t = k * KNOT
        _, hour, weekday = self._clock.fields(t)
        a = _activity(self._table, hour)
        if weekday >= 5:
            a *= self._weekend
        b = self.params.peak_m3h * a
        b *= 1.0 + 0.08 * smooth(self._k_day, t, _DAY) + 0.15 * signed(self._k_knot, k)
        b = max(b, 0.0)
        if len(self._knots) > 64:
            self._knots.clear()
        self._knots[k] = b
        return b

    def _draw(self, k: int) -> tuple[float, float, float]:
        """(start offset s, duration s, flow m3/h) of the short draw in interval k, if any."""
        kd = self._k_draw
        if self._draw_p <= 0 or unit(kd[0], k) >= self._draw_p:
            return 0.0, 0.0, 0.0
        dur = 60.0 + 180.0 * unit(kd[1], k)
        start = (KNOT - dur) * unit(kd[2], k)
        return start, dur, 0.2 + 0.4 * unit(kd[3], k)

    def leak_m3h(self, k: int) -> float:
        """Leak flow over the grid interval ``k`` (judged at its midpoint)."""
        t = (k + 0.5) * KNOT
        flow = 0.0
        for s, e, f in self._fixed:
            if s <= t < e:
                flow += f
        every = self.params.leak_every_days
        if every:
            rel = self._clock.local(t) - _LEAK_START_H * _H
            day = math.floor(rel / _DAY)
            start_day = day - (day + self._leak_phase) % every
            length = self.params.leak_nights * _DAY - (_LEAK_START_H - _LEAK_END_H + 24) % 24 * _H
            if rel - start_day * _DAY < length:
                flow += self.params.leak_m3h
        return flow

    def leak_windows(self, start: datetime, end: datetime) -> list[tuple[datetime, datetime]]:
        """The leak intervals (start, end) the model produces between two instants."""
        t0, t1 = start.timestamp(), end.timestamp()
        spans: list[tuple[float, float]] = []
        k = math.floor(t0 / KNOT)
        open_at: float | None = None
        while k * KNOT < t1:
            leaking = self.leak_m3h(k) > 0
            if leaking and open_at is None:
                open_at = max(k * KNOT, t0)
            elif not leaking and open_at is not None:
                spans.append((open_at, k * KNOT))
                open_at = None
            k += 1
        if open_at is not None:
            spans.append((open_at, t1))
        tz = start.tzinfo
        return [(datetime.fromtimestamp(a, tz), datetime.fromtimestamp(b, tz)) for a, b in spans]

    def _interval_m3(self, k: int) -> float:
        b = (self._base(k) + self._base(k + 1)) * KNOT / 2
        _, dur, f = self._draw(k)
        return (b + dur * f + self.leak_m3h(k) * KNOT) / _H

    def flow_m3h(self, t: float) -> float:
        """Flow at ``t`` in m3/h."""
        k = math.floor(t / KNOT)
        b0 = self._base(k)
        off = t - k * KNOT
        flow = b0 + (self._base(k + 1) - b0) * off / KNOT + self.leak_m3h(k)
        s, dur, f = self._draw(k)
        if s <= off < s + dur:
            flow += f
        return flow

    def advance(self, t: float) -> None:
        if self._t is None:
            self._k = math.floor(t / KNOT)
            self._v_k = self._initial
            self._t = t
            return
        if t <= self._t:
            return
        while (self._k + 1) * KNOT <= t:
            self._v_k += self._interval_m3(self._k)
            self._k += 1
        self._t = t

    def volume_m3(self) -> float:
        """Volume counter at :attr:`time`."""
        t = self._t
        if t is None:
            raise RuntimeError("advance() the model before reading it")
        k = self._k
        off = t - k * KNOT
        b0 = self._base(k)
        bt = b0 + (self._base(k + 1) - b0) * off / KNOT
        s, dur, f = self._draw(k)
        drawn = max(0.0, min(off, s + dur) - s) * f if dur else 0.0
        return self._v_k + ((b0 + bt) * off / 2 + drawn + self.leak_m3h(k) * off) / _H

    def values(self, metrics: Collection[str] | None = None) -> dict[str, float]:
        if self._t is None:
            raise RuntimeError("advance() the model before reading it")
        return {"volume": self.volume_m3(), "flow_rate": self.flow_m3h(self._t)}


# --------------------------------------------------------------------------- elevator

# Values of the GB/T 24476 items in the elevator profile.
MODE_NORMAL = 1
MODE_INSPECTION = 2
MODE_OUT_OF_SERVICE = 7

# Trips per hour at the default peak of 40, by local hour on a working day: morning arrivals,
# lunch, evening departures.
_TRIPS = (
    2, 1, 1, 1, 1, 2, 5, 15, 40, 36, 20, 22,
    36, 32, 20, 20, 21, 25, 36, 30, 15, 10, 6, 3,
)  # fmt: skip
_TRIPS_PEAK = 40.0

# Fault codes the simulated controller raises (facmon's own numbering, not a standard):
# stopped between floors with the car occupied -> entrapment; faults at a landing do not trap.
FAULTS_BETWEEN_FLOORS = (11, 12, 13)  # safety circuit open, stop outside door zone, overspeed
FAULTS_AT_LANDING = (21, 22, 31)  # door lock circuit, door open timeout, drive fault

_IDLE, _DOOR, _RUN, _FAULT, _INSPECTION = range(5)


@dataclass(frozen=True, slots=True)
class ElevatorParams:
    """Traffic, reliability and maintenance of one car.

    Floors are numbered as people say them: basements are negative (B2 = -2) and there is no
    floor 0.
    """

    lowest_floor: int = 1
    top_floor: int = 10
    lobby_floor: int = 1
    trips_per_hour_peak: float = _TRIPS_PEAK
    weekend_factor: float = 0.6
    faults_per_week: float = 0.5
    entrapment_share: float = 0.3  # share of faults that stop the car between floors occupied
    # How long a passenger stays shut in until rescued, uniform between the two (minutes).
    entrapment_minutes: tuple[float, float] = (8.0, 30.0)
    inspection_every_days: int | None = 15  # semi-monthly maintenance (TSG T5002)
    inspection_hours: float = 1.5
    inspection_hour: float = 14.0  # local start time of the maintenance window
    seconds_per_floor: float = 2.0
    initial_runs: int | None = None

    def __post_init__(self) -> None:
        if self.lowest_floor == 0 or self.top_floor == 0 or self.lobby_floor == 0:
            raise ValueError("there is no floor 0: basements are -1, -2, ...")
        if not self.lowest_floor < self.top_floor:
            raise ValueError("lowest_floor must be below top_floor")
        if not self.lowest_floor <= self.lobby_floor <= self.top_floor:
            raise ValueError("lobby_floor must be between lowest_floor and top_floor")
        if not self.trips_per_hour_peak > 0:
            raise ValueError("trips_per_hour_peak must be positive")
        if self.faults_per_week < 0:
            raise ValueError("faults_per_week must not be negative")
        if not 0 <= self.entrapment_share <= 1:
            raise ValueError("entrapment_share must be in [0, 1]")
        lo, hi = self.entrapment_minutes
        if not 0 < lo <= hi:
            raise ValueError("entrapment_minutes must be (low, high) with 0 < low <= high")
        if self.inspection_every_days is not None and self.inspection_every_days < 1:
            raise ValueError("inspection_every_days must be at least 1")
        if not 0 < self.inspection_hours < 24:
            raise ValueError("inspection_hours must be between 0 and 24")

    @property
    def floors(self) -> list[int]:
        return [f for f in range(self.lowest_floor, self.top_floor + 1) if f != 0]


@dataclass(slots=True)
class _Seg:
    kind: int
    start: float
    end: float
    floor: int  # where the car is (runs: where it leaves from)
    to: int = 0  # runs: destination
    passenger: bool = False
    code: int = 0
    entrapment: bool = False
    zone: int = 1


@dataclass(frozen=True, slots=True)
class StateSpan:
    """A stretch ``[start, end)`` (POSIX seconds) out of normal service, with the values of
    :attr:`ElevatorModel.STATE_METRICS` during it; outside every span they are normal, 0, 0."""

    start: float
    end: float
    service_mode: int
    fault_code: int
    entrapment: int


@dataclass(slots=True)
class _Counters:
    runs: int
    run_seconds: float
    door_cycles: int


@dataclass(slots=True)
class _Fault:
    code: int
    duration: float
    between_floors: bool


class ElevatorModel:
    """One elevator car as a timeline of idle, door, run, fault and inspection segments.

    Calls arrive as a Poisson process whose rate follows the hour of day (busier 8-9, 12-13 and
    18-19; lower at weekends). A call from floor ``o`` to ``d`` sends the car empty to ``o`` if
    needed, opens the door, runs loaded to ``d`` and opens the door again. Counters:
    ``run_count`` +1 when a run starts, ``running_hours`` while running, ``door_cycles`` +1
    when a door closes. Faults (rate ``faults_per_week``) either stop a loaded car between
    floors (entrapment until rescue) or keep the car at a landing; either way the car is out of
    service, stopped, with a non-zero ``fault_code`` for a few minutes. A maintenance window
    (service mode inspection) recurs every ``inspection_every_days``.

    Between faults and maintenance windows :attr:`STATE_METRICS` stand at normal service, no
    fault, no entrapment. With :meth:`track_states` on, every fault and maintenance segment the
    model passes is kept as a :class:`StateSpan`, and :meth:`state_values` gives those metrics
    at any instants in bulk -- exactly what :meth:`values` would give at each of them.
    """

    STATE_METRICS: ClassVar[tuple[str, ...]] = ("service_mode", "fault_code", "entrapment")

    def __init__(
        self, device_id: str, params: ElevatorParams, clock: LocalClock, seed: int = 1
    ) -> None:
        self.device_id = device_id
        self.params = params
        self._clock = clock
        self._floors = params.floors
        self._index = {f: i for i, f in enumerate(self._floors)}
        lobby = params.lobby_floor
        self._ground = [f for f in self._floors if f <= lobby]  # lobby and car parks below
        self._upper = [f for f in self._floors if f > lobby] or [
            f for f in self._floors if f != lobby
        ]

        def k(n: int) -> int:
            return key_of(seed, device_id, "elevator", str(n))

        self._rng = random.Random(k(0))
        self._scale = params.trips_per_hour_peak / _TRIPS_PEAK
        self._lam_max = max(_TRIPS) * self._scale * max(1.0, params.weekend_factor) / _H
        every = params.inspection_every_days
        self._insp_phase = int(unit(k(1), 0) * every) if every else 0
        weekly = sum(_TRIPS) * self._scale * (5 + 2 * params.weekend_factor)
        self._fault_p = params.faults_per_week / weekly if weekly > 0 else 0.0
        runs = params.initial_runs
        if runs is None:
            runs = 50_000 + int(400_000 * unit(k(2), 0))
        self._done = _Counters(runs, runs * 22.0, 2 * runs + int(1000 * unit(k(3), 0)))
        self._segs: deque[_Seg] = deque()
        self._t: float | None = None
        self._plan_t = 0.0
        self._plan_floor = params.lobby_floor
        self._spans: list[StateSpan] | None = None  # faults/maintenance passed, when tracking
        self._spans_from = 0.0  # instant tracking started or state_values() was last called

    @property
    def time(self) -> float | None:
        return self._t

    # ---- traffic

    def trips_per_hour(self, t: float) -> float:
        """Rate of calls at ``t``."""
        _, hour, weekday = self._clock.fields(t)
        r = _TRIPS[int(hour)] * self._scale
        return r * self.params.weekend_factor if weekday >= 5 else r

    def _travel(self, a: int, b: int) -> float:
        return 4.0 + self.params.seconds_per_floor * abs(self._index[a] - self._index[b])

    def _pick_trip(self, t: float) -> tuple[int, int]:
        rng = self._rng
        floors = self._floors
        lobby = self.params.lobby_floor
        ground, upper = self._ground, self._upper
        _, hour, _ = self._clock.fields(t)
        if 7 <= hour < 10 and rng.random() < 0.75:  # arrivals: lobby/car park -> office floors
            return rng.choice(ground if rng.random() < 0.4 else [lobby]), rng.choice(upper)
        if 17 <= hour < 20 and rng.random() < 0.75:  # departures
            return rng.choice(upper), rng.choice(ground if rng.random() < 0.4 else [lobby])
        if 11.5 <= hour < 13.5 and rng.random() < 0.5:  # lunch: to and from the lobby
            up = rng.choice(upper)
            return (lobby, up) if rng.random() < 0.5 else (up, lobby)
        o = rng.choice(floors)
        d = rng.choice([f for f in floors if f != o])
        return o, d

    def _next_inspection(self, t: float) -> tuple[float, float] | None:
        every = self.params.inspection_every_days
        if not every:
            return None
        off = self._clock.offset(t)
        day = math.floor((t + off) / _DAY) - 1
        length = self.params.inspection_hours * _H
        for d in range(day, day + every + 2):
            if (d + self._insp_phase) % every:
                continue
            s = d * _DAY + self.params.inspection_hour * _H - off
            if s + length > t:
                return max(s, t), s + length
        return None

    # ---- planning

    def _push(self, seg: _Seg) -> None:
        self._segs.append(seg)
        self._plan_t = seg.end
        self._plan_floor = seg.to if seg.kind == _RUN else seg.floor

    def _door(self, t: float, floor: int, passenger: bool) -> float:
        end = t + 5.0 + 5.0 * self._rng.random()
        self._push(_Seg(_DOOR, t, end, floor, passenger=passenger))
        return end

    def _plan(self) -> None:
        """Append the segments up to and including the next call (or maintenance window)."""
        rng = self._rng
        t0 = self._plan_t
        floor = self._plan_floor
        insp = self._next_inspection(t0)
        t = t0
        while True:  # thinning: candidates at the highest rate, kept at the current one
            t += rng.expovariate(self._lam_max)
            if insp is not None and t >= insp[0]:
                if insp[0] > t0:
                    self._push(_Seg(_IDLE, t0, insp[0], floor))
                self._push(_Seg(_INSPECTION, insp[0], insp[1], floor))
                return
            if rng.random() * self._lam_max * _H < self.trips_per_hour(t):
                break
        self._push(_Seg(_IDLE, t0, t, floor))
        o, d = self._pick_trip(t)
        if o != floor:
            self._push(_Seg(_RUN, t, t + self._travel(floor, o), floor, to=o))
            t = self._plan_t
        t = self._door(t, o, True)
        fault = self._draw_fault()
        if fault is not None and fault.between_floors and abs(self._index[d] - self._index[o]) > 1:
            # Stuck part-way: the run ends early, between floors, with the passenger inside.
            i0, i1 = self._index[o], self._index[d]
            stuck = self._floors[i0 + (1 if i1 > i0 else -1) * rng.randint(1, abs(i1 - i0) - 1)]
            self._push(_Seg(_RUN, t, t + self._travel(o, stuck), o, to=stuck, passenger=True))
            t = self._plan_t
            self._push(
                _Seg(_FAULT, t, t + fault.duration, stuck, passenger=True, code=fault.code,
                     entrapment=True, zone=0)
            )  # fmt: skip
            self._door(self._plan_t, stuck, False)  # rescued at the landing
            return
        self._push(_Seg(_RUN, t, t + self._travel(o, d), o, to=d, passenger=True))
        t = self._door(self._plan_t, d, False)
        if fault is not None:
            if fault.between_floors:  # a one-floor trip: no room to stop between floors
                fault = _Fault(rng.choice(FAULTS_AT_LANDING), fault.duration, False)
            self._push(_Seg(_FAULT, t, t + fault.duration, d, code=fault.code))

    def _draw_fault(self) -> _Fault | None:
        rng = self._rng
        if rng.random() >= self._fault_p:
            return None
        if rng.random() < self.params.entrapment_share:
            minutes = rng.uniform(*self.params.entrapment_minutes)
            return _Fault(rng.choice(FAULTS_BETWEEN_FLOORS), 60 * minutes, True)
        return _Fault(rng.choice(FAULTS_AT_LANDING), 60 * rng.uniform(3, 15), False)

    def _commit(self, seg: _Seg) -> None:
        if seg.kind == _RUN:
            self._done.runs += 1
            self._done.run_seconds += seg.end - seg.start
        elif seg.kind == _DOOR:
            self._done.door_cycles += 1
        elif self._spans is not None and seg.kind in (_FAULT, _INSPECTION):
            self._spans.append(_span(seg, seg.end))

    # ---- states in bulk

    def track_states(self, on: bool = True) -> None:
        """Start (or stop) keeping the fault and maintenance spans the model passes, for
        :meth:`state_values`. Starting discards whatever was kept before."""
        if on and self._t is None:
            raise RuntimeError("advance() the model before tracking its states")
        self._spans = [] if on else None
        self._spans_from = self._t if on and self._t is not None else 0.0

    def state_values(self, times: npt.NDArray[np.float64]) -> dict[str, npt.NDArray[np.float64]]:
        """:attr:`STATE_METRICS` at each of ``times`` (POSIX seconds, ascending), by metric.

        The times must lie between the instant :meth:`track_states` was turned on -- or this
        was last called, whichever is later -- and :attr:`time`: spans kept before that are
        dropped by this call. Each value is the one :meth:`values` reports with the model
        advanced to that instant (a segment holds over ``[start, end)``).
        """
        if self._spans is None or self._t is None:
            raise RuntimeError("track_states() before asking for state values")
        if len(times) and not self._spans_from <= times[0] <= times[-1] <= self._t:
            raise ValueError(
                f"state values asked for [{times[0]}, {times[-1]}], outside the tracked "
                f"[{self._spans_from}, {self._t}]"
            )
        spans = self._spans
        head = self._segs[0] if self._segs else None
        if head is not None and head.kind in (_FAULT, _INSPECTION):
            spans = [*spans, _span(head, head.end)]
        self._spans = []
        self._spans_from = self._t
        n = len(times)
        mode = np.full(n, float(MODE_NORMAL))
        code = np.zeros(n)
        trapped = np.zeros(n)
        if spans and n:
            starts = np.fromiter((s.start for s in spans), np.float64, len(spans))
            ends = np.fromiter((s.end for s in spans), np.float64, len(spans))
            i = np.searchsorted(starts, times, side="right") - 1
            inside = i >= 0
            inside[inside] = times[inside] < ends[i[inside]]
            j = i[inside]
            mode[inside] = np.array([float(s.service_mode) for s in spans])[j]
            code[inside] = np.array([float(s.fault_code) for s in spans])[j]
            trapped[inside] = np.array([float(s.entrapment) for s in spans])[j]
        return {"service_mode": mode, "fault_code": code, "entrapment": trapped}

    # ---- public

    def advance(self, t: float) -> None:
        if self._t is None:
            self._t = self._plan_t = t
            self._plan_floor = self.params.lobby_floor
        if t < self._t:
            return
        segs = self._segs
        while True:
            while segs and segs[0].end <= t:
                self._commit(segs.popleft())
            if segs:
                break
            self._plan()
        self._t = t

    def inject_fault(self, code: int, duration: float, *, entrapment: bool = False) -> None:
        """Start a fault now (at :attr:`time`) lasting ``duration`` seconds.

        The car stops where it is; with ``entrapment`` a passenger is shut in between floors
        until the fault ends. Normal service resumes afterwards.
        """
        if self._t is None:
            raise RuntimeError("advance() the model before injecting a fault")
        if not 0 < code <= 0xFFFF:
            raise ValueError(f"fault code must be in 1..65535, got {code}")
        if not duration > 0:
            raise ValueError("fault duration must be positive")
        t = self._t
        cur = self._segs[0]
        floor = self._floor_at(cur, t)
        if self._spans is not None and cur.kind in (_FAULT, _INSPECTION) and t > cur.start:
            self._spans.append(_span(cur, t))  # cut short by the new fault
        if cur.kind == _RUN:  # the part of the run already done counts
            self._done.runs += 1
            self._done.run_seconds += t - cur.start
        elif cur.kind == _DOOR:
            self._done.door_cycles += 1
        self._segs.clear()
        self._push(
            _Seg(_FAULT, t, t + duration, floor, passenger=entrapment, code=code,
                 entrapment=entrapment, zone=0 if entrapment else 1)
        )  # fmt: skip
        if entrapment:
            self._door(self._plan_t, floor, False)

    def _floor_at(self, seg: _Seg, t: float) -> int:
        if seg.kind != _RUN:
            return seg.floor
        i0, i1 = self._index[seg.floor], self._index[seg.to]
        moving = max(0.0, t - seg.start - 2.0)  # ~2 s to accelerate before leaving the floor
        passed = min(abs(i1 - i0), int(moving / self.params.seconds_per_floor))
        return self._floors[i0 + passed if i1 > i0 else i0 - passed]

    def values(self, metrics: Collection[str] | None = None) -> dict[str, float]:
        t = self._t
        if t is None:
            raise RuntimeError("advance() the model before reading it")
        s = self._segs[0]
        runs = self._done.runs
        run_s = self._done.run_seconds
        if s.kind == _RUN:
            runs += 1
            run_s += t - s.start
        mode = {_FAULT: MODE_OUT_OF_SERVICE, _INSPECTION: MODE_INSPECTION}.get(s.kind, MODE_NORMAL)
        direction = 0
        if s.kind == _RUN:
            direction = 1 if self._index[s.to] > self._index[s.floor] else 2
        return {
            "service_mode": float(mode),
            "running": 1.0 if s.kind == _RUN else 0.0,
            "direction": float(direction),
            "floor": float(self._floor_at(s, t)),
            "door_zone": 0.0 if s.kind == _RUN else float(s.zone),
            "door_closed_locked": 0.0 if s.kind == _DOOR else 1.0,
            "passenger_in_car": 1.0 if s.passenger else 0.0,
            "fault_code": float(s.code),
            "entrapment": 1.0 if s.entrapment else 0.0,
            "run_count": float(runs),
            "running_hours": run_s / _H,
            "door_cycles": float(self._done.door_cycles),
        }


def _span(seg: _Seg, end: float) -> StateSpan:
    mode = MODE_OUT_OF_SERVICE if seg.kind == _FAULT else MODE_INSPECTION
    return StateSpan(seg.start, end, mode, seg.code, 1 if seg.entrapment else 0)
