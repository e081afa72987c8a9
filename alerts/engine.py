"""Threshold rules and communication loss evaluated on the live stream of readings
(../shared/alerting-semantics.md).

The engine is called with every batch the collector emits (:meth:`AlertEngine.evaluate`) and
once a second or so by a timer (:meth:`AlertEngine.tick`), which notices silence: a device that
stopped answering, a metric that stopped coming, a RECOVERING alert whose hold ran out. Each
(rule, device) pair whose selector matches is one alert instance, identified by its
fingerprint (D1); each device also has one built-in communication-loss instance (A8). State
lives in the ticket database (``alerts`` table) and is mirrored in memory so that a batch with
no transition costs no database round trip; a restart reloads the unresolved instances (A13).

Episode: INACTIVE -> [PENDING] -> FIRING <-> RECOVERING / NODATA -> RESOLVED. Only entering
FIRING from outside an episode, a severity rise and RESOLVED are worth a page
(:attr:`AlertTransition.notify`); moves within an episode are recorded but stay quiet.

Latched rules (A10) stay RECOVERING after the condition cleared until someone acknowledges
(:meth:`AlertEngine.acknowledge`); acknowledging changes no state otherwise.

Not yet: shelving (A11), rate-of-change and state rules, grouping, notifications and
escalation.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from alerts.tickets import (
    AlertConflict,
    AlertRecord,
    AlertState,
    NewAlert,
    TicketRecord,
    TicketRequest,
    TicketStore,
)
from config.models import COMMUNICATION_LOSS_RULE, Device, Selector, SiteConfig, ThresholdRule
from store.reading import Quality, Reading

log = logging.getLogger(__name__)

# Attempts to apply one sample when other engines keep moving the same alert underneath.
_ATTEMPTS = 3

# What the collector writes about each poll (collector.modbus): these say nothing about the
# building, and only ``device_up`` = 1 proves the device answered.
UP_METRIC = "device_up"
HEALTH_METRICS = frozenset({UP_METRIC, "poll_latency", "consecutive_failures", "last_ok_age"})

# A8: the built-in communication-loss alert of every device.
COMMUNICATION_LOSS_CLASS = "communication_loss"
COMMUNICATION_LOSS_SEVERITY = "major"
_COMM_NAMES = {"zh-CN": "通信中断", "en": "communication lost"}

# A12: this many fire/clear cycles within the window make an alert chatter; a chattering episode
# is held open (RECOVERING) until the condition stayed clear for a whole window.
CHATTER_CYCLES = 3
CHATTER_WINDOW = timedelta(seconds=60)

_SEVERITY_RANK = {"info": 0, "warning": 1, "minor": 2, "major": 3, "critical": 4}
_EPISODE = (AlertState.FIRING, AlertState.RECOVERING, AlertState.NODATA)


def fingerprint(rule_id: str, site: str, building: str, device: str, metric: str) -> str:
    """Identity of an alert instance (D1): labels only, never values or text."""
    # \x1f (unit separator) cannot occur in ids, so ("a", "bc") and ("ab", "c") differ.
    raw = "\x1f".join((rule_id, site, building, device, metric))
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


def selects(selector: Selector, device: Device) -> bool:
    """Whether a rule's selector covers ``device``; an empty list or mapping matches all."""
    return (
        (not selector.kinds or device.kind in selector.kinds)
        and (not selector.buildings or device.location.building in selector.buildings)
        and (not selector.devices or device.id in selector.devices)
        and all(device.tags.get(k) == v for k, v in selector.tags.items())
    )


@dataclass(frozen=True, slots=True)
class AlertTransition:
    """One change of one alert instance, as reported by :meth:`AlertEngine.evaluate` and
    :meth:`AlertEngine.tick`. ``before == after == FIRING`` is a severity rise (A9)."""

    fingerprint: str
    rule_id: str
    device: str
    building: str
    metric: str
    before: AlertState
    after: AlertState
    at: datetime
    value: float  # NaN when no sample caused it (a timer, silence)
    severity: str
    alert_id: int
    ticket: TicketRecord | None = None  # the ticket a FIRING transition opened or added to
    # Whether someone should be paged: False for moves within an episode (A5, A8, A13).
    notify: bool = True


@dataclass(frozen=True, slots=True)
class _Instance:
    """A (rule, device) pair the engine watches."""

    rule: ThresholdRule
    device: Device
    fingerprint: str
    trip: float
    clear: float
    stale_after: timedelta

    @property
    def rule_id(self) -> str:
        return self.rule.id

    @property
    def metric(self) -> str:
        return self.rule.metric

    @property
    def high(self) -> bool:
        return self.rule.above is not None

    def tripped(self, v: float) -> bool:
        return v > self.trip if self.high else v < self.trip

    def cleared(self, v: float) -> bool:
        return v <= self.clear if self.high else v >= self.clear


@dataclass(frozen=True, slots=True)
class _CommWatch:
    """The communication-loss instance of one device (A8)."""

    device: Device
    fingerprint: str
    stale_after: timedelta
    rule_id: str = COMMUNICATION_LOSS_RULE
    metric: str = UP_METRIC


def _instance(rule: ThresholdRule, device: Device, site: str) -> _Instance:
    fp = fingerprint(rule.id, site, device.location.building, device.id, rule.metric)
    stale = rule.stale_after or 2 * device.poll_interval
    return _Instance(rule, device, fp, rule.trip_level, rule.clear_level, stale)


def _comm_watch(device: Device, site: str) -> _CommWatch:
    fp = fingerprint(COMMUNICATION_LOSS_RULE, site, device.location.building, device.id, UP_METRIC)
    return _CommWatch(device, fp, 2 * device.poll_interval)


class AlertEngine:
    """Evaluates the site's threshold rules and communication loss, and keeps alerts and
    tickets in ``tickets``.

    Several engines may share one database (D2): the database's unique indexes decide who
    writes a transition, and the loser adopts what the winner wrote. Not thread-safe: call
    ``evaluate`` and ``tick`` from one thread (the event loop).
    """

    def __init__(self, config: SiteConfig, tickets: TicketStore) -> None:
        self._site = config.site.id
        self._language = config.site.language
        self._tickets = tickets
        self._by_series: dict[tuple[str, str], list[_Instance]] = {}
        self._by_fp: dict[str, _Instance] = {}
        self._comm: dict[str, _CommWatch] = {}
        for device in config.devices:
            self._comm[device.id] = _comm_watch(device, self._site)
        for rule in config.rules:
            for device in config.devices:
                if selects(rule.select, device):
                    inst = _instance(rule, device, self._site)
                    self._by_series.setdefault((device.id, rule.metric), []).append(inst)
                    self._by_fp[inst.fingerprint] = inst
        self._alerts: dict[str, AlertRecord] = {
            a.fingerprint: a for a in tickets.unresolved_alerts()
        }
        self._last: dict[str, datetime] = {}  # newest sample evaluated, per instance
        self._seen: dict[str, datetime] = {}  # newest proof of life, per device
        self._clears: dict[str, deque[datetime]] = {}  # recent clears, per instance (A12)
        # Silence is measured from here for what has not been heard from since start-up.
        self._origin: datetime | None = None
        self._db_failing = False
        if self._alerts:
            log.info("alert engine: %d unresolved alert(s) restored", len(self._alerts))

    def unresolved(self) -> list[AlertRecord]:
        """The unresolved alerts (PENDING, FIRING, RECOVERING, NODATA) as this engine knows
        them."""
        return sorted(self._alerts.values(), key=lambda a: a.id)

    def device_down(self, device: str) -> bool:
        """Whether ``device`` has an unresolved communication-loss alert."""
        watch = self._comm.get(device)
        return watch is not None and watch.fingerprint in self._alerts

    def evaluate(self, readings: Sequence[Reading], now: datetime) -> list[AlertTransition]:
        """Apply a batch of readings; returns the transitions it caused, in time order.

        Each sample is evaluated at its own time (capped at ``now`` against clock skew), so a
        batch carrying several polls times ``for`` correctly. BAD samples and NaN are ignored:
        missing data never resolves an alert (A8). A sample older than one already evaluated
        for the same instance (a late replay) is ignored too. A usable sample or
        ``device_up`` = 1 proves the device answers and ends its communication loss;
        ``device_up`` = 0 opens one once the device has been silent for its ``stale_after``.
        """
        self._start(now)
        out: list[AlertTransition] = []
        for r in sorted(readings, key=lambda r: r.time):
            watch = self._comm.get(r.device)
            if watch is None or r.quality is Quality.BAD or math.isnan(r.value):
                continue
            t = min(r.time, now)
            if r.metric == UP_METRIC:
                if r.value >= 1:
                    self._alive(watch, t, out)
                else:
                    self._check_silence(watch, t, out)
            elif r.metric not in HEALTH_METRICS:
                self._alive(watch, t, out)
            # Rules may still watch the health metrics themselves (e.g. poll_latency).
            for inst in self._by_series.get((r.device, r.metric), ()):
                last = self._last.get(inst.fingerprint)
                if last is not None and t < last:
                    continue
                self._last[inst.fingerprint] = t
                self._step(inst.fingerprint, out, self._apply, inst, r.value, t)
        return out

    def tick(self, now: datetime) -> list[AlertTransition]:
        """Notice what only the passing of time changes: devices silent for ``stale_after``
        (communication loss, A8), metrics that stopped coming (NODATA), RECOVERING alerts whose
        hold ran out (A6). Call it about once a second."""
        self._start(now)
        out: list[AlertTransition] = []
        for watch in self._comm.values():
            self._check_silence(watch, now, out)
        for fp, cur in list(self._alerts.items()):
            inst = self._by_fp.get(fp)
            if inst is None or self.device_down(inst.device.id):
                continue  # A8: while the device is lost its own alert speaks for it
            last = self._last.get(fp, self._origin)
            assert last is not None
            if now - last >= inst.stale_after:
                if cur.state in (AlertState.PENDING, AlertState.FIRING, AlertState.RECOVERING):
                    self._step(fp, out, self._no_data, inst, now)
            elif cur.state is AlertState.RECOVERING:
                self._step(fp, out, self._recovered, inst, now)
        return out

    # -- internals ----------------------------------------------------------------------------
    def _start(self, now: datetime) -> None:
        if now.tzinfo is None:
            raise ValueError("now must be timezone-aware")
        if self._origin is None:
            self._origin = now

    def _step(
        self,
        fp: str,
        out: list[AlertTransition],
        fn: Callable[..., AlertTransition | None],
        *args: Any,
    ) -> None:
        """Run ``fn(current alert or None, *args)``, adopting what other writers did."""
        for _ in range(_ATTEMPTS):
            try:
                tr = fn(self._alerts.get(fp), *args)
            except AlertConflict as c:
                # Another engine moved this alert: take the database's word and decide again.
                self._adopt(fp, c.current)
                continue
            except SQLAlchemyError:
                # The cache is only updated after a commit, so the transition is simply tried
                # again with the next sample or tick once the database is back.
                if not self._db_failing:
                    log.exception("ticket database unavailable; alert transitions are retried")
                    self._db_failing = True
                return
            if self._db_failing:
                log.info("ticket database available again")
                self._db_failing = False
            if tr is not None:
                out.append(tr)
                _log_transition(tr)
            return
        log.warning("alert %s: gave up after %d conflicting writers", fp[:12], _ATTEMPTS)

    def _adopt(self, fp: str, current: AlertRecord | None) -> None:
        if current is None:
            self._alerts.pop(fp, None)
        else:
            self._alerts[fp] = current

    def _keep(self, rec: AlertRecord) -> AlertRecord:
        if rec.state is AlertState.RESOLVED:
            self._alerts.pop(rec.fingerprint, None)
        else:
            self._alerts[rec.fingerprint] = rec
        return rec

    def _hold(self, inst: _Instance, cur: AlertRecord) -> timedelta:
        hold = inst.rule.keep_firing_for
        return max(hold, CHATTER_WINDOW) if cur.chattering else hold

    def _may_resolve(self, inst: _Instance, cur: AlertRecord, now: datetime) -> bool:
        """A RECOVERING alert ends once its hold ran out (A6) and, for a latched rule, someone
        acknowledged the return to normal (A10)."""
        assert cur.recovering_since is not None
        if now - cur.recovering_since < self._hold(inst, cur):
            return False
        if not inst.rule.latched:
            return True
        return cur.acked_at is not None and cur.acked_at >= cur.recovering_since

    def acknowledge(self, fp: str, who: str, now: datetime) -> AlertTransition | None:
        """``who`` acknowledges the unresolved alert ``fp`` (A10). Nothing else changes, except
        that a latched alert whose condition has cleared resolves now (returned). Raises
        ``KeyError`` when ``fp`` has no unresolved alert."""
        self._start(now)
        for _ in range(_ATTEMPTS):
            cur = self._alerts.get(fp)
            if cur is None:
                raise KeyError(f"no unresolved alert {fp[:12]}")
            try:
                rec = self._keep(self._tickets.acknowledge_alert(cur, who, now))
                inst = self._by_fp.get(fp)
                if (
                    inst is None
                    or rec.state is not AlertState.RECOVERING
                    or not self._may_resolve(inst, rec, now)
                ):
                    return None
                v = rec.last_value if rec.last_value is not None else math.nan
                tr = self._resolve(inst, rec, now, v)
            except AlertConflict as c:
                self._adopt(fp, c.current)
                continue
            _log_transition(tr)
            return tr
        raise RuntimeError(f"alert {fp[:12]}: gave up after {_ATTEMPTS} conflicting writers")

    def _apply(
        self, cur: AlertRecord | None, inst: _Instance, v: float, t: datetime
    ) -> AlertTransition | None:
        rule = inst.rule
        if cur is None:
            if not inst.tripped(v):
                return None
            if rule.for_ > timedelta(0):  # A1: PENDING first, and no ticket (A2)
                rec, _ = self._tickets.start_alert(self._new(inst), AlertState.PENDING, t, v)
                return self._transition(
                    inst, AlertState.INACTIVE, self._keep(rec), t, v, notify=False
                )
            rec, ticket = self._tickets.start_alert(
                self._new(inst), AlertState.FIRING, t, v, self._ticket_request(inst, v)
            )
            return self._transition(inst, AlertState.INACTIVE, self._keep(rec), t, v, ticket)
        if cur.state is AlertState.PENDING:
            if not inst.tripped(v):  # A2: a false evaluation ends the pending episode
                self._tickets.cancel_pending(cur)
                self._alerts.pop(inst.fingerprint, None)
                return self._transition(
                    inst, AlertState.PENDING, cur, t, v, after=AlertState.INACTIVE, notify=False
                )
            if t - cur.started_at >= rule.for_:  # A3
                rec, ticket = self._tickets.fire_alert(cur, t, v, self._ticket_request(inst, v))
                return self._transition(inst, AlertState.PENDING, self._keep(rec), t, v, ticket)
            return None
        # Within an episode: FIRING, RECOVERING or NODATA.
        higher = _SEVERITY_RANK[rule.severity] > _SEVERITY_RANK.get(cur.severity, 0)
        raise_to = rule.severity if higher else None  # A9: rises, never falls
        if inst.tripped(v):
            if cur.state is AlertState.FIRING and raise_to is None:
                return None
            # A5: a trip while RECOVERING (or after NODATA) continues the episode quietly.
            rec = self._tickets.move_alert(cur, t, AlertState.FIRING, value=v, severity=raise_to)
            return self._transition(
                inst, cur.state, self._keep(rec), t, v, notify=raise_to is not None
            )
        if inst.cleared(v):
            if cur.state is AlertState.RECOVERING:
                if self._may_resolve(inst, cur, t):  # A6, A10
                    return self._resolve(inst, cur, t, v)
                return None
            # A fire/clear cycle (A12).
            clears = self._clears.setdefault(inst.fingerprint, deque())
            clears.append(t)
            while clears and t - clears[0] > CHATTER_WINDOW:
                clears.popleft()
            chattering = cur.chattering or len(clears) >= CHATTER_CYCLES
            hold = max(rule.keep_firing_for, CHATTER_WINDOW if chattering else timedelta(0))
            if hold <= timedelta(0) and not rule.latched:  # A5 without keep_firing_for
                return self._resolve(inst, cur, t, v)
            rec = self._tickets.move_alert(
                cur,
                t,
                AlertState.RECOVERING,
                value=v,
                recovering_since=t,
                cycles=cur.cycles + 1,
                chattering=chattering,
            )
            return self._transition(inst, cur.state, self._keep(rec), t, v, notify=False)
        # Between the levels (A4): a FIRING alert keeps firing; a RECOVERING one no longer
        # holds the clear level, and a NODATA one has data again.
        if cur.state is AlertState.FIRING and raise_to is None:
            return None
        rec = self._tickets.move_alert(cur, t, AlertState.FIRING, value=v, severity=raise_to)
        return self._transition(inst, cur.state, self._keep(rec), t, v, notify=raise_to is not None)

    def _resolve(self, inst: _Instance, cur: AlertRecord, t: datetime, v: float) -> AlertTransition:
        note = f"condition cleared: {inst.metric} = {v:g} ({_limit_text(inst)})"
        rec = self._tickets.resolve_alert(cur, t, v, note=note)
        return self._transition(inst, cur.state, self._keep(rec), t, v)

    def _recovered(
        self, cur: AlertRecord | None, inst: _Instance, now: datetime
    ) -> AlertTransition | None:
        if cur is None or cur.state is not AlertState.RECOVERING:
            return None
        if not self._may_resolve(inst, cur, now):
            return None
        v = cur.last_value if cur.last_value is not None else math.nan
        return self._resolve(inst, cur, now, v)

    def _no_data(
        self, cur: AlertRecord | None, inst: _Instance, now: datetime
    ) -> AlertTransition | None:
        """A8: silence never resolves; a PENDING condition can no longer be confirmed."""
        if cur is None:
            return None
        if cur.state is AlertState.PENDING:
            self._tickets.cancel_pending(cur)
            self._alerts.pop(inst.fingerprint, None)
            return self._transition(
                inst, cur.state, cur, now, math.nan, after=AlertState.INACTIVE, notify=False
            )
        if cur.state not in (AlertState.FIRING, AlertState.RECOVERING):
            return None
        rec = self._tickets.move_alert(cur, now, AlertState.NODATA)
        return self._transition(inst, cur.state, self._keep(rec), now, math.nan, notify=False)

    # -- communication loss (A8) --------------------------------------------------------------
    def _alive(self, watch: _CommWatch, t: datetime, out: list[AlertTransition]) -> None:
        dev = watch.device.id
        seen = self._seen.get(dev)
        if seen is None or t > seen:
            self._seen[dev] = t
        if watch.fingerprint in self._alerts:
            self._step(watch.fingerprint, out, self._comm_back, watch, t)

    def _check_silence(self, watch: _CommWatch, now: datetime, out: list[AlertTransition]) -> None:
        if watch.fingerprint in self._alerts:
            return
        last = self._seen.get(watch.device.id, self._origin)
        assert last is not None
        if now - last < watch.stale_after:
            return
        before = len(out)
        self._step(watch.fingerprint, out, self._comm_lost, watch, last, now)
        if len(out) == before:
            return
        # Its point alerts fall silent with it: one alert per device, not one per point.
        for inst in self._by_fp.values():
            if inst.device.id == watch.device.id and inst.fingerprint in self._alerts:
                self._step(inst.fingerprint, out, self._no_data, inst, now)

    def _comm_lost(
        self, cur: AlertRecord | None, watch: _CommWatch, last: datetime, now: datetime
    ) -> AlertTransition | None:
        if cur is not None:
            return None
        device = watch.device
        new = NewAlert(
            fingerprint=watch.fingerprint,
            rule_id=watch.rule_id,
            site=self._site,
            building=device.location.building,
            device=device.id,
            metric=watch.metric,
            severity=COMMUNICATION_LOSS_SEVERITY,
        )
        req = TicketRequest(
            title=f"{device.name}: {_COMM_NAMES[self._language]}",
            device=device.id,
            building=device.location.building,
            fault_class=COMMUNICATION_LOSS_CLASS,
            severity=COMMUNICATION_LOSS_SEVERITY,
            note=f"no answer from {device.id} since {last.isoformat()}",
        )
        rec, ticket = self._tickets.start_alert(new, AlertState.FIRING, now, math.nan, req)
        return self._transition(watch, AlertState.INACTIVE, self._keep(rec), now, math.nan, ticket)

    def _comm_back(
        self, cur: AlertRecord | None, watch: _CommWatch, t: datetime
    ) -> AlertTransition | None:
        if cur is None:
            return None
        note = f"communication restored: {watch.device.id} answers again"
        rec = self._tickets.resolve_alert(cur, t, 1.0, note=note)
        return self._transition(watch, cur.state, self._keep(rec), t, 1.0)

    # -- records ------------------------------------------------------------------------------
    def _new(self, inst: _Instance) -> NewAlert:
        return NewAlert(
            fingerprint=inst.fingerprint,
            rule_id=inst.rule.id,
            site=self._site,
            building=inst.device.location.building,
            device=inst.device.id,
            metric=inst.rule.metric,
            severity=inst.rule.severity,
        )

    def _ticket_request(self, inst: _Instance, v: float) -> TicketRequest:
        rule, device = inst.rule, inst.device
        return TicketRequest(
            title=f"{device.name}: {rule.name}",
            device=device.id,
            building=device.location.building,
            fault_class=rule.fault_class,
            severity=rule.severity,
            note=f"rule {rule.id}: {rule.metric} = {v:g} ({_limit_text(inst)})",
        )

    @staticmethod
    def _transition(
        inst: _Instance | _CommWatch,
        before: AlertState,
        rec: AlertRecord,
        t: datetime,
        v: float,
        ticket: TicketRecord | None = None,
        *,
        after: AlertState | None = None,
        notify: bool = True,
    ) -> AlertTransition:
        return AlertTransition(
            fingerprint=inst.fingerprint,
            rule_id=inst.rule_id,
            device=inst.device.id,
            building=inst.device.location.building,
            metric=inst.metric,
            before=before,
            after=after or rec.state,
            at=t,
            value=v,
            severity=rec.severity,
            alert_id=rec.id,
            ticket=ticket,
            notify=notify,
        )


def _limit_text(inst: _Instance) -> str:
    if inst.high:
        return f"trip > {inst.trip:g}, clear <= {inst.clear:g}"
    return f"trip < {inst.trip:g}, clear >= {inst.clear:g}"


def _log_transition(tr: AlertTransition) -> None:
    ticket = f" ticket {tr.ticket.number}" if tr.ticket is not None else ""
    log.info(
        "alert %s -> %s: rule %s device %s %s=%g at %s (%s)%s",
        tr.before.value,
        tr.after.value,
        tr.rule_id,
        tr.device,
        tr.metric,
        tr.value,
        tr.at.isoformat(),
        tr.severity,
        ticket,
    )
