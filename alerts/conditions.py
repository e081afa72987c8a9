"""How each kind of rule judges the samples of one device: trip, clear, or hold.

The alert state machine (alerts.engine) is the same for every kind of rule (for, hysteresis,
keep_firing_for, NODATA, chattering, latching, severity rise: ../shared/alerting-semantics.md);
what differs is how a sample becomes a verdict:

* threshold -- the sample against a trip and a clear level (A4), absolute or a share of the
  device's rating (``Device.ratings``);
* rate -- the change over the trailing ``window`` scaled to ``per``, against rate levels;
* state -- the state code (or its name in the device profile's enum) in or not in a set;
  there is no level between tripped and cleared;
* night_flow -- once a night, the leak rules of ../shared/domain.md (alerts.night_flow).

A condition may also have no verdict yet (a rate before its window is half full, a night that
is not over): the sample still proves the series alive but moves nothing. The samples a rate
or a night has seen live in memory: after a restart a rate waits for its window again and
night runs count from zero, while the alerts themselves are restored from the database (A13).
"""

from __future__ import annotations

import logging
import math
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from alerts.night_flow import NightFlowCondition
from alerts.verdict import Condition, Judgement, Verdict
from collector.planner import apply_overrides
from collector.profile import ProfileError, load_profile
from config.models import (
    AnyRule,
    Device,
    NightFlowRule,
    RateRule,
    SiteConfig,
    StateRule,
    ThresholdRule,
)

log = logging.getLogger(__name__)


def _levels_text(trip: float, clear: float, high: bool, unit: str = "") -> str:
    if high:
        return f"trip > {trip:g}{unit}, clear <= {clear:g}{unit}"
    return f"trip < {trip:g}{unit}, clear >= {clear:g}{unit}"


@dataclass(slots=True)
class LevelCondition:
    """A value against a trip and a clear level (A4)."""

    metric: str
    trip: float
    clear: float
    high: bool
    note: str = ""  # where the levels come from, e.g. "90% of rating current 250"

    def verdict(self, v: float) -> Verdict:
        if v > self.trip if self.high else v < self.trip:
            return Verdict.TRIP
        if v <= self.clear if self.high else v >= self.clear:
            return Verdict.CLEAR
        return Verdict.HOLD

    def judge(self, value: float, t: datetime) -> Judgement | None:
        return Judgement(self.verdict(value), value)

    def due(self, now: datetime) -> Judgement | None:
        return None

    def text(self, value: float) -> str:
        note = f"; {self.note}" if self.note else ""
        levels = _levels_text(self.trip, self.clear, self.high)
        return f"{self.metric} = {value:g} ({levels}{note})"


def _span_text(d: timedelta) -> str:
    s = d.total_seconds()
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= size and s % size == 0:
            return f"{int(s // size)}{unit}"
    return f"{s:g}s"


@dataclass(slots=True)
class RateCondition:
    """The change between the oldest and the newest sample within ``window`` (the mean of the
    rates between consecutive samples, weighted by their spacing), per ``per``. It is judged
    once the samples span at least half the window, so one noisy pair of samples a second
    apart cannot trip it."""

    metric: str
    levels: LevelCondition
    per: timedelta
    window: timedelta
    samples: deque[tuple[datetime, float]]

    @classmethod
    def of(cls, rule: RateRule) -> RateCondition:
        levels = LevelCondition(rule.metric, rule.trip_level, rule.clear_level, rule.high)
        return cls(rule.metric, levels, rule.per, rule.window, deque())

    def judge(self, value: float, t: datetime) -> Judgement | None:
        s = self.samples
        if s and t <= s[-1][0]:
            return None  # a repeat of the newest sample: no time has passed
        s.append((t, value))
        while s and t - s[0][0] > self.window:
            s.popleft()
        t0, v0 = s[0]
        span = t - t0
        if span * 2 < self.window:
            return None
        rate = (value - v0) / (span / self.per)
        return Judgement(self.levels.verdict(rate), rate)

    def due(self, now: datetime) -> Judgement | None:
        return None

    def text(self, value: float) -> str:
        per = _span_text(self.per)
        levels = _levels_text(self.levels.trip, self.levels.clear, self.levels.high, f"/{per}")
        return (
            f"{self.metric} changing {value:+g}/{per} over the last {_span_text(self.window)} "
            f"({levels})"
        )


@dataclass(slots=True)
class StateCondition:
    """A state code in (or, ``negate``, not in) a set of codes."""

    metric: str
    codes: frozenset[int]
    negate: bool
    names: dict[int, str]  # the profile's names of the codes, for notes

    def judge(self, value: float, t: datetime) -> Judgement | None:
        code = int(value) if float(value).is_integer() else None
        hit = code is not None and code in self.codes
        return Judgement(Verdict.TRIP if hit != self.negate else Verdict.CLEAR, value)

    def due(self, now: datetime) -> Judgement | None:
        return None

    def _name(self, code: float) -> str:
        if math.isnan(code) or not float(code).is_integer():
            return f"{code:g}"
        name = self.names.get(int(code))
        return f"{name} ({int(code)})" if name else f"{int(code)}"

    def text(self, value: float) -> str:
        listed = ", ".join(self._name(float(c)) for c in sorted(self.codes))
        return f"{self.metric} = {self._name(value)} ({'not ' if self.negate else ''}in {listed})"


def enum_of(device: Device, metric: str) -> dict[int, str]:
    """Names of the state codes of ``metric`` on ``device``: its profile's enum with the
    device's overrides applied; empty for devices without a profile (MQTT) or metrics that
    are not enums."""
    src = device.source
    if src.type == "mqtt":
        return {}
    try:
        profile = apply_overrides(load_profile(src.profile), src.overrides)
        return dict(profile.register(metric).enum or {})
    except (OSError, ProfileError, KeyError, ValueError):
        return {}


def state_codes(rule: StateRule, names: dict[int, str]) -> tuple[frozenset[int], list[str]]:
    """The codes a state rule lists, and the names among them ``names`` does not know."""
    by_name = {n: c for c, n in names.items()}
    codes: set[int] = set()
    unknown: list[str] = []
    for v in rule.values:
        if isinstance(v, int):
            codes.add(v)
        elif v in by_name:
            codes.add(by_name[v])
        elif v.strip().lstrip("-").isdigit():
            codes.add(int(v))
        else:
            unknown.append(v)
    return frozenset(codes), unknown


def condition_for(rule: AnyRule, device: Device, config: SiteConfig) -> Condition | None:
    """The condition of ``rule`` on ``device``; None when the rule cannot apply to it (a
    level that is a share of a rating the device does not have, a ``not_in`` state the
    device's profile does not name)."""
    if isinstance(rule, ThresholdRule):
        try:
            trip, clear = rule.levels(device.ratings)
        except KeyError:
            return None
        note = ""
        if rule.rated:
            share = rule.above_rating if rule.above_rating is not None else rule.below_rating
            assert share is not None
            note = f"{share:.0%} of rating {rule.rating_key} {device.ratings[rule.rating_key]:g}"
        return LevelCondition(rule.metric, trip, clear, rule.high, note)
    if isinstance(rule, RateRule):
        return RateCondition.of(rule)
    if isinstance(rule, StateRule):
        names = enum_of(device, rule.metric)
        codes, unknown = state_codes(rule, names)
        negate = rule.not_in is not None
        if unknown:
            # `facmon config check` reports these. An 'in' rule still watches the states it
            # can name; a 'not_in' rule would trip on the very states it meant to allow.
            log.warning(
                "rule %s: device %s has no state %s of %s%s",
                rule.id,
                device.id,
                ", ".join(repr(u) for u in unknown),
                rule.metric,
                ": rule not applied to it" if negate else "",
            )
            if negate:
                return None
        return StateCondition(rule.metric, codes, negate, names)
    if isinstance(rule, NightFlowRule):
        return NightFlowCondition.of(
            rule, config.reports.water, ZoneInfo(config.site.timezone), device.poll_interval
        )
    raise TypeError(f"unknown rule kind {type(rule).__name__}")
