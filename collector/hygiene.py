"""Counter hygiene at collection time: flag counter reads that look like glitches.

Energy and volume counters only count up, yet the field bus breaks that in a few ways: a
gateway or meter answers 0 (or some far-low value) for one poll, a corrupted frame decodes to a
huge number, an integer register wraps at its maximum, and now and then a meter really is reset
or replaced. ``store.counters`` sorts this out after the fact over whole windows; the guard here
does the part that can be decided read by read, so a glitch is already marked when it is stored
and alerting never sees a raw 0 as "the building stopped using energy".

Rules, per (device, metric), for readings of registers marked ``counter: true``:

* the first good reading is the trusted baseline;
* a reading at or above the baseline (within ``max_rate`` per second of elapsed time, when a
  rate is known) is GOOD and becomes the baseline;
* a drop below the baseline is a rollover when the baseline sat near the top of the register
  (``rollover``, the scaled wrap value) and the new value near zero, and the implied advance is
  plausible for ``max_rate``: GOOD, logged at INFO;
* any other drop, and a jump faster than ``max_rate``, is UNCERTAIN and leaves the baseline
  alone, so a read that returns to the old level simply carries on;
* a drop (or jump) that persists for ``confirm_reads`` consecutive, mutually consistent reads is
  a genuine reset (or step): the last of them becomes the new baseline, is GOOD, and the event
  is logged once at WARNING with the device, metric, old and new value.

Pure logic: no I/O besides logging, time comes from the readings, state lives in memory. Not
thread-safe; the collector calls it from its one event loop.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Literal

from store.reading import Quality, Reading

__all__ = ["DEFAULT_CONFIRM_READS", "DEFAULT_ROLLOVER_BAND", "CounterEvents", "CounterGuard"]

log = logging.getLogger(__name__)

DEFAULT_CONFIRM_READS = 3
# "Near the top" / "near zero" as a fraction of the register's range. A 0 glitch while the
# counter sits in the top band is indistinguishable from a wrap by value alone; ``max_rate``
# (when the profile gives one) is what separates them there.
DEFAULT_ROLLOVER_BAND = 0.1

_Kind = Literal["drop", "jump"]


@dataclass(slots=True)
class CounterEvents:
    """What the guard has seen for one counter since it started (or was reset)."""

    glitches: int = 0  # reads returned UNCERTAIN
    rollovers: int = 0
    resets: int = 0  # confirmed drops: a new, lower baseline
    steps: int = 0  # confirmed jumps faster than max_rate: a new, higher baseline


@dataclass(slots=True)
class _State:
    time: datetime
    value: float
    pending_kind: _Kind | None = None
    pending: list[tuple[datetime, float]] = field(default_factory=list)
    events: CounterEvents = field(default_factory=CounterEvents)

    def trust(self, time: datetime, value: float) -> None:
        self.time = time
        self.value = value
        self.pending_kind = None
        self.pending.clear()


class CounterGuard:
    """Per (device, metric) counter state; :meth:`check` grades each new counter reading.

    ``confirm_reads``: consecutive consistent reads that turn a drop into a confirmed reset (and
    a too-fast jump into a confirmed step). ``rollover_band``: how close to the top of the
    register the last value, and how close to zero the new one, must be for a wrap.
    ``tolerance``: absolute slack in the counter's own unit (its resolution): drops up to it are
    read noise, and a jump may exceed ``max_rate`` times the elapsed time by up to it.
    """

    def __init__(
        self,
        confirm_reads: int = DEFAULT_CONFIRM_READS,
        rollover_band: float = DEFAULT_ROLLOVER_BAND,
        tolerance: float = 0.0,
    ) -> None:
        if confirm_reads < 1:
            raise ValueError(f"confirm_reads must be at least 1, got {confirm_reads}")
        if not 0 < rollover_band < 0.5:
            raise ValueError(f"rollover_band must be in (0, 0.5), got {rollover_band}")
        if not (tolerance >= 0 and math.isfinite(tolerance)):
            raise ValueError(f"tolerance must be a finite number >= 0, got {tolerance}")
        self.confirm_reads = confirm_reads
        self.rollover_band = rollover_band
        self.tolerance = tolerance
        self._states: dict[tuple[str, str], _State] = {}

    def check(
        self, reading: Reading, rollover: float | None = None, max_rate: float | None = None
    ) -> Reading:
        """The reading as it should be stored: unchanged, or with quality UNCERTAIN.

        ``rollover`` is the scaled value at which the register wraps to 0
        (``Register.rollover``; None for floats and signed types). ``max_rate`` is the highest
        plausible increase per second in the reading's unit (e.g. kWh/s); None skips the jump
        check. Readings that are already BAD or UNCERTAIN, not finite, or not newer than the
        baseline are returned as they are and do not move the baseline.
        """
        if reading.quality is not Quality.GOOD or not math.isfinite(reading.value):
            return reading
        key = (reading.device, reading.metric)
        state = self._states.get(key)
        if state is None:
            self._states[key] = _State(reading.time, reading.value)
            return reading
        if reading.time <= state.time:
            # A replayed or out-of-order sample: there is no earlier trusted value to judge it by.
            return reading
        elapsed = (reading.time - state.time).total_seconds()
        delta = reading.value - state.value
        slack = self._slack(state.value, reading.value)
        if delta >= 0:
            if max_rate is not None and delta > max_rate * elapsed + slack:
                return self._suspicious(state, reading, "jump", max_rate)
            state.trust(reading.time, reading.value)
            return reading
        if -delta <= slack:
            return reading
        if self._is_rollover(state.value, reading.value, elapsed, rollover, max_rate):
            log.info(
                "counter rollover: device %s, metric %s wrapped from %s to %s (wraps at %s)",
                reading.device,
                reading.metric,
                state.value,
                reading.value,
                rollover,
            )
            state.events.rollovers += 1
            state.trust(reading.time, reading.value)
            return reading
        return self._suspicious(state, reading, "drop", max_rate)

    def events(self, device: str, metric: str) -> CounterEvents:
        """A copy of the event counts of one counter (all zero if it was never seen)."""
        state = self._states.get((device, metric))
        return replace(state.events) if state is not None else CounterEvents()

    def baseline(self, device: str, metric: str) -> tuple[datetime, float] | None:
        """Time and value of the last trusted reading of one counter, if any."""
        state = self._states.get((device, metric))
        return (state.time, state.value) if state is not None else None

    def forget(self, device: str, metric: str | None = None) -> None:
        """Drop the state of one counter, or of every counter of a device (e.g. on removal)."""
        if metric is not None:
            self._states.pop((device, metric), None)
            return
        for key in [k for k in self._states if k[0] == device]:
            del self._states[key]

    def _is_rollover(
        self,
        last: float,
        value: float,
        elapsed: float,
        rollover: float | None,
        max_rate: float | None,
    ) -> bool:
        if rollover is None or rollover <= 0:
            return False
        band = rollover * self.rollover_band
        if last < rollover - band or value > band:
            return False
        advance = rollover - last + value
        return max_rate is None or advance <= max_rate * elapsed + self._slack(rollover)

    def _suspicious(
        self, state: _State, reading: Reading, kind: _Kind, max_rate: float | None
    ) -> Reading:
        t, v = reading.time, reading.value
        if state.pending_kind == kind and self._continues(state.pending[-1], t, v, max_rate):
            state.pending.append((t, v))
        else:
            state.pending_kind = kind
            state.pending[:] = [(t, v)]
        if len(state.pending) >= self.confirm_reads:
            old = state.value
            if kind == "drop":
                state.events.resets += 1
                what = "counter reset"
            else:
                state.events.steps += 1
                what = "counter jump"
            log.warning(
                "%s: device %s, metric %s went from %s to %s and stayed there for %d reads; "
                "%s is the new baseline (data-quality event)",
                what,
                reading.device,
                reading.metric,
                old,
                v,
                len(state.pending),
                v,
                extra={
                    "data_quality": what.replace(" ", "_"),
                    "device": reading.device,
                    "metric": reading.metric,
                    "old_value": old,
                    "new_value": v,
                },
            )
            state.trust(t, v)
            return reading
        state.events.glitches += 1
        log.debug(
            "counter %s: device %s, metric %s read %s against baseline %s; flagged UNCERTAIN",
            kind,
            reading.device,
            reading.metric,
            v,
            state.value,
        )
        return replace(reading, quality=Quality.UNCERTAIN)

    def _continues(
        self, prev: tuple[datetime, float], t: datetime, v: float, max_rate: float | None
    ) -> bool:
        # A real reset or step keeps counting up from its new level; a string of unrelated
        # garbage values does not, and must not be confirmed as a new baseline.
        prev_t, prev_v = prev
        slack = self._slack(prev_v, v)
        if v < prev_v - slack:
            return False
        if max_rate is None:
            return True
        elapsed = max((t - prev_t).total_seconds(), 0.0)
        return v - prev_v <= max_rate * elapsed + slack

    def _slack(self, *values: float) -> float:
        # The tolerance plus float rounding: 100.00 - 99.99 is 0.010000000000005, and a one-LSB
        # drop must not miss a tolerance of exactly one LSB.
        return self.tolerance + 1e-12 * max(abs(v) for v in values)
