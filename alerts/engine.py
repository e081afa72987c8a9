"""Threshold rules evaluated on the live stream of readings (../shared/alerting-semantics.md).

The engine is called with every batch the collector emits. Each (rule, device) pair whose
selector matches is one alert instance, identified by its fingerprint (D1). Its state lives in
the ticket database (``alerts`` table) and is mirrored in memory so that a batch with no
transition costs no database round trip; a restart reloads the unresolved instances (A13).

Implemented now: INACTIVE -> PENDING -> FIRING -> RESOLVED with ``for`` and clear-level
hysteresis (A1-A5 without ``keep_firing_for``, A7), one unresolved instance per fingerprint
across engines (D2), ticket opening and occurrences (D4, T1), "condition cleared" notes (T4).
RECOVERING, NODATA/communication loss, severity changes, acknowledgement, shelving, grouping,
notifications and escalation come with the full engine.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

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
from config.models import Device, Selector, SiteConfig, ThresholdRule
from store.reading import Quality, Reading

log = logging.getLogger(__name__)

# Attempts to apply one sample when other engines keep moving the same alert underneath.
_ATTEMPTS = 3


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
    """One change of state of one alert instance, as reported by :meth:`AlertEngine.evaluate`."""

    fingerprint: str
    rule_id: str
    device: str
    building: str
    metric: str
    before: AlertState
    after: AlertState
    at: datetime
    value: float
    severity: str
    alert_id: int
    ticket: TicketRecord | None = None  # the ticket a FIRING transition opened or added to


@dataclass(frozen=True, slots=True)
class _Instance:
    """A (rule, device) pair the engine watches."""

    rule: ThresholdRule
    device: Device
    fingerprint: str
    trip: float
    clear: float

    @property
    def high(self) -> bool:
        return self.rule.above is not None

    def tripped(self, v: float) -> bool:
        return v > self.trip if self.high else v < self.trip

    def cleared(self, v: float) -> bool:
        return v <= self.clear if self.high else v >= self.clear


def _instance(rule: ThresholdRule, device: Device, site: str) -> _Instance:
    trip = rule.above if rule.above is not None else rule.below
    assert trip is not None  # the model requires exactly one of above/below
    # The model keeps the clear level on the normal side of the trip level.
    clear = trip if rule.clear is None else rule.clear
    fp = fingerprint(rule.id, site, device.location.building, device.id, rule.metric)
    return _Instance(rule, device, fp, trip, clear)


class AlertEngine:
    """Evaluates the site's threshold rules and keeps alerts and tickets in ``tickets``.

    Several engines may share one database (D2): the database's unique indexes decide who
    writes a transition, and the loser adopts what the winner wrote.
    """

    def __init__(self, config: SiteConfig, tickets: TicketStore) -> None:
        self._site = config.site.id
        self._tickets = tickets
        self._by_series: dict[tuple[str, str], list[_Instance]] = {}
        for rule in config.rules:
            for device in config.devices:
                if selects(rule.select, device):
                    inst = _instance(rule, device, self._site)
                    self._by_series.setdefault((device.id, rule.metric), []).append(inst)
        self._alerts: dict[str, AlertRecord] = {
            a.fingerprint: a for a in tickets.unresolved_alerts()
        }
        self._last: dict[str, datetime] = {}
        self._db_failing = False
        if self._alerts:
            log.info("alert engine: %d unresolved alert(s) restored", len(self._alerts))

    def unresolved(self) -> list[AlertRecord]:
        """The PENDING and FIRING alerts as this engine knows them."""
        return sorted(self._alerts.values(), key=lambda a: a.id)

    def evaluate(self, readings: Sequence[Reading], now: datetime) -> list[AlertTransition]:
        """Apply a batch of readings; returns the transitions it caused, in time order.

        Each sample is evaluated at its own time (capped at ``now`` against clock skew), so a
        batch carrying several polls times ``for`` correctly. BAD samples and NaN are ignored:
        missing data never resolves an alert (A8). A sample older than one already evaluated
        for the same instance (a late replay) is ignored too.
        """
        if now.tzinfo is None:
            raise ValueError("now must be timezone-aware")
        out: list[AlertTransition] = []
        usable = [r for r in readings if r.quality is not Quality.BAD]
        usable.sort(key=lambda r: r.time)
        for r in usable:
            instances = self._by_series.get((r.device, r.metric))
            if not instances or math.isnan(r.value):
                continue
            t = min(r.time, now)
            for inst in instances:
                last = self._last.get(inst.fingerprint)
                if last is not None and t < last:
                    continue
                self._last[inst.fingerprint] = t
                tr = self._step(inst, r.value, t)
                if tr is not None:
                    out.append(tr)
                    _log_transition(tr)
        return out

    def _step(self, inst: _Instance, value: float, t: datetime) -> AlertTransition | None:
        for _ in range(_ATTEMPTS):
            try:
                tr = self._apply(inst, self._alerts.get(inst.fingerprint), value, t)
            except AlertConflict as c:
                # Another engine moved this alert: take the database's word and decide again.
                self._adopt(inst.fingerprint, c.current)
                continue
            except SQLAlchemyError:
                # The cache is only updated after a commit, so the transition is simply tried
                # again with the next sample once the database is back.
                if not self._db_failing:
                    log.exception("ticket database unavailable; alert transitions are retried")
                    self._db_failing = True
                return None
            if self._db_failing:
                log.info("ticket database available again")
                self._db_failing = False
            return tr
        log.warning("alert %s: gave up after %d conflicting writers", inst.rule.id, _ATTEMPTS)
        return None

    def _adopt(self, fp: str, current: AlertRecord | None) -> None:
        if current is None:
            self._alerts.pop(fp, None)
        else:
            self._alerts[fp] = current

    def _apply(
        self, inst: _Instance, cur: AlertRecord | None, v: float, t: datetime
    ) -> AlertTransition | None:
        rule = inst.rule
        if cur is None:
            if not inst.tripped(v):
                return None
            if rule.for_.total_seconds() > 0:  # A1: PENDING first, and no ticket (A2)
                rec, _ = self._tickets.start_alert(self._new(inst), AlertState.PENDING, t, v)
                self._alerts[inst.fingerprint] = rec
                return self._transition(inst, AlertState.INACTIVE, rec, t, v)
            rec, ticket = self._tickets.start_alert(
                self._new(inst), AlertState.FIRING, t, v, self._ticket_request(inst, v)
            )
            self._alerts[inst.fingerprint] = rec
            return self._transition(inst, AlertState.INACTIVE, rec, t, v, ticket)
        if cur.state is AlertState.PENDING:
            if not inst.tripped(v):  # A2: a false evaluation ends the pending episode
                self._tickets.cancel_pending(cur)
                self._alerts.pop(inst.fingerprint, None)
                return self._transition(
                    inst, AlertState.PENDING, cur, t, v, after=AlertState.INACTIVE
                )
            if t - cur.started_at >= rule.for_:  # A3
                rec, ticket = self._tickets.fire_alert(cur, t, v, self._ticket_request(inst, v))
                self._alerts[inst.fingerprint] = rec
                return self._transition(inst, AlertState.PENDING, rec, t, v, ticket)
            return None
        if cur.state is AlertState.FIRING and inst.cleared(v):  # A4: between levels keeps firing
            rec = self._tickets.resolve_alert(
                cur, t, v, note=f"condition cleared: {rule.metric} = {v:g} ({_limit_text(inst)})"
            )
            self._alerts.pop(inst.fingerprint, None)
            return self._transition(inst, AlertState.FIRING, rec, t, v)
        return None

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
        inst: _Instance,
        before: AlertState,
        rec: AlertRecord,
        t: datetime,
        v: float,
        ticket: TicketRecord | None = None,
        *,
        after: AlertState | None = None,
    ) -> AlertTransition:
        return AlertTransition(
            fingerprint=inst.fingerprint,
            rule_id=inst.rule.id,
            device=inst.device.id,
            building=inst.device.location.building,
            metric=inst.rule.metric,
            before=before,
            after=after or rec.state,
            at=t,
            value=v,
            severity=inst.rule.severity,
            alert_id=rec.id,
            ticket=ticket,
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
