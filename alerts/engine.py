"""Alert rules and communication loss evaluated on the live stream of readings
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

Every kind of rule (threshold, rate, state, night_flow: alerts.conditions) runs through the
same state machine; only how a sample becomes a verdict (trip, clear, hold, or none yet)
differs. The site's rules are its own plus, with ``default_rules: true``, the shipped defaults
it does not replace (alerts.default_rules).

Devices behind one Modbus gateway or on one serial bus (the same
:func:`collector.transport.connection_key`, with at least two unit ids) share a gateway watch:
when all of them are silent at once, one ``gateway_offline`` alert and ticket speaks for them
instead of one communication-loss alert per device (A8), and it resolves itself when any of
them answers again (T4). A device that falls silent while a neighbour on the same connection
still answers gets its own communication-loss alert as before.

Shelving (A11) is a flag on the alert (alerts.tickets) and silences live in alerts.silences:
the engine evaluates and records regardless; paging (alerts.paging) decides who hears of it.
Not yet: grouping of notifications (D5).
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from alerts.conditions import condition_for
from alerts.default_rules import site_rules
from alerts.tickets import (
    AlertConflict,
    AlertRecord,
    AlertState,
    NewAlert,
    TicketRecord,
    TicketRequest,
    TicketStore,
)
from alerts.verdict import Condition, Judgement, Verdict
from collector.transport import connection_key
from config.models import (
    COMMUNICATION_LOSS_RULE,
    GATEWAY_OFFLINE_RULE,
    AnyRule,
    Device,
    ModbusRtuSource,
    ModbusSource,
    MqttSource,
    Selector,
    SiteConfig,
)
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
# A8: the built-in alert of a gateway or serial bus whose devices all fell silent at once.
GATEWAY_OFFLINE_CLASS = "gateway_offline"
_GATEWAY_PREFIX = "gateway:"  # ':' never occurs in device ids, so this cannot name a device
_ID_MAX = 64  # width of the device column of alerts and tickets

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
    return selector.matches(device)


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
    """A (rule, device) pair the engine watches; ``condition`` judges its samples."""

    rule: AnyRule
    device: Device
    fingerprint: str
    condition: Condition
    stale_after: timedelta

    @property
    def rule_id(self) -> str:
        return self.rule.id

    @property
    def metric(self) -> str:
        return self.rule.metric


@dataclass(frozen=True, slots=True)
class _CommWatch:
    """The communication-loss instance of one device (A8)."""

    device: Device
    fingerprint: str
    stale_after: timedelta
    rule_id: str = COMMUNICATION_LOSS_RULE
    metric: str = UP_METRIC


@dataclass(frozen=True, slots=True)
class _GatewayWatch:
    """One connection (gateway host and port, or serial port) that devices on two or more
    Modbus units share: its communication-loss instance (A8)."""

    key: tuple[str, ...]
    address: str  # as operators write it: 192.0.2.30:4001 or /dev/ttyUSB0
    gateway_id: str  # the alert's and ticket's ``device``
    building: str  # where most of its devices are
    devices: tuple[Device, ...]
    fingerprint: str
    rule_id: str = GATEWAY_OFFLINE_RULE
    metric: str = UP_METRIC


def _gateways(devices: Sequence[Device], site: str) -> list[_GatewayWatch]:
    groups: dict[tuple[str, ...], list[tuple[Device, ModbusSource]]] = {}
    for device in devices:
        if isinstance(device.source, MqttSource):
            continue
        groups.setdefault(connection_key(device.source), []).append((device, device.source))
    out: list[_GatewayWatch] = []
    for key, members in groups.items():
        # Several devices read from one unit are one device on the wire, not a gateway.
        if len({src.unit_id for _, src in members}) < 2:
            continue
        src = members[0][1]
        address = src.port if isinstance(src, ModbusRtuSource) else f"{src.host}:{src.port}"
        gateway_id = _GATEWAY_PREFIX + address
        if len(gateway_id) > _ID_MAX:
            digest = hashlib.sha256("\x1f".join(key).encode("utf-8")).hexdigest()
            gateway_id = _GATEWAY_PREFIX + digest[:16]
        buildings = Counter(d.location.building for d, _ in members)
        # Labels that survive reordering the devices: the connection key alone (D1).
        fp = fingerprint(GATEWAY_OFFLINE_RULE, site, "", "/".join(key), UP_METRIC)
        out.append(
            _GatewayWatch(
                key=key,
                address=address,
                gateway_id=gateway_id,
                building=buildings.most_common(1)[0][0],
                devices=tuple(d for d, _ in members),
                fingerprint=fp,
            )
        )
    return out


def _instance(rule: AnyRule, device: Device, config: SiteConfig) -> _Instance | None:
    condition = condition_for(rule, device, config)
    if condition is None:
        return None
    fp = fingerprint(rule.id, config.site.id, device.location.building, device.id, rule.metric)
    stale = rule.stale_after or 2 * device.poll_interval
    return _Instance(rule, device, fp, condition, stale)


def _comm_watch(device: Device, site: str) -> _CommWatch:
    fp = fingerprint(COMMUNICATION_LOSS_RULE, site, device.location.building, device.id, UP_METRIC)
    return _CommWatch(device, fp, 2 * device.poll_interval)


class AlertEngine:
    """Evaluates the site's rules and communication loss, and keeps alerts and tickets in
    ``tickets``.

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
        self._gateways = _gateways(config.devices, self._site)
        self._gateway_of: dict[str, _GatewayWatch] = {
            d.id: gw for gw in self._gateways for d in gw.devices
        }
        # Instances whose condition also decides with time alone (night_flow).
        self._timed: list[_Instance] = []
        for rule in site_rules(config):
            for device in config.devices:
                if not rule.select.matches(device):
                    continue
                inst = _instance(rule, device, config)
                if inst is None:  # e.g. a default rule on a rating this device lacks
                    continue
                self._by_series.setdefault((device.id, rule.metric), []).append(inst)
                self._by_fp[inst.fingerprint] = inst
                if rule.kind == "night_flow":
                    self._timed.append(inst)
        self._alerts: dict[str, AlertRecord] = {
            a.fingerprint: a for a in tickets.unresolved_alerts()
        }
        self._last: dict[str, datetime] = {}  # newest sample evaluated, per instance
        self._seen: dict[str, datetime] = {}  # newest proof of life, per device
        # Silence of a device behind a gateway counts from the gateway's recovery at the
        # earliest: its neighbours answer first while the collector works down the bus.
        self._quiet_from: dict[str, datetime] = {}
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
        """Whether ``device`` has an unresolved communication-loss alert, its own or its
        gateway's."""
        watch = self._comm.get(device)
        if watch is not None and watch.fingerprint in self._alerts:
            return True
        gw = self._gateway_of.get(device)
        return gw is not None and gw.fingerprint in self._alerts

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
                j = inst.condition.judge(r.value, t)
                if j is None:
                    cur = self._alerts.get(inst.fingerprint)
                    if cur is None or cur.state is not AlertState.NODATA:
                        continue
                    # Data is back but the rule has no verdict yet (a rate filling its
                    # window, a night not over): the last verdict stands, firing.
                    j = Judgement(Verdict.HOLD, r.value)
                self._step(inst.fingerprint, out, self._apply, inst, j, t)
        return out

    def tick(self, now: datetime) -> list[AlertTransition]:
        """Notice what only the passing of time changes: devices silent for ``stale_after``
        (communication loss, A8), metrics that stopped coming (NODATA), RECOVERING alerts whose
        hold ran out (A6), nights of night_flow rules that ended without a later sample. Call
        it about once a second."""
        self._start(now)
        out: list[AlertTransition] = []
        # Gateways first: devices that fell silent together make one alert, not one each.
        for gw in self._gateways:
            self._check_gateway(gw, now, out)
        for watch in self._comm.values():
            self._check_silence(watch, now, out)
        for timed in self._timed:
            if self.device_down(timed.device.id):
                continue  # decided by the first sample once it is back
            j = timed.condition.due(now)
            if j is not None:
                self._step(timed.fingerprint, out, self._apply, timed, j, now)
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
                if inst.rule.latched and not _acked_since(cur):
                    # A10: the acknowledgement may come from another process (an API-only
                    # facmon, or a direct database write): look for it there.
                    self._refresh(fp)
                self._step(fp, out, self._recovered, inst, now)
        return out

    def _refresh(self, fp: str) -> None:
        try:
            current = self._tickets.unresolved_alert(fp)
        except SQLAlchemyError:
            return  # the tick's next database write reports the outage
        self._adopt(fp, current)

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
        self, cur: AlertRecord | None, inst: _Instance, j: Judgement, t: datetime
    ) -> AlertTransition | None:
        rule = inst.rule
        v = j.value
        tripped = j.verdict is Verdict.TRIP
        if cur is None:
            if not tripped:
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
            if not tripped:  # A2: a false evaluation ends the pending episode
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
        if tripped:
            if cur.state is AlertState.FIRING and raise_to is None:
                return None
            # A5: a trip while RECOVERING (or after NODATA) continues the episode quietly.
            rec = self._tickets.move_alert(cur, t, AlertState.FIRING, value=v, severity=raise_to)
            return self._transition(
                inst, cur.state, self._keep(rec), t, v, notify=raise_to is not None
            )
        if j.verdict is Verdict.CLEAR:
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
        note = f"condition cleared: {inst.condition.text(v)}"
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
        gw = self._gateway_of.get(dev)
        if gw is not None and gw.fingerprint in self._alerts:
            self._step(gw.fingerprint, out, self._gateway_back, gw, watch.device, t)
        if watch.fingerprint in self._alerts:
            self._step(watch.fingerprint, out, self._comm_back, watch, t)

    def _silent_since(self, device: str) -> datetime:
        last = self._seen.get(device, self._origin)
        assert last is not None
        quiet = self._quiet_from.get(device)
        return last if quiet is None or quiet < last else quiet

    def _check_silence(self, watch: _CommWatch, now: datetime, out: list[AlertTransition]) -> None:
        if watch.fingerprint in self._alerts:
            return
        last = self._silent_since(watch.device.id)
        if now - last < watch.stale_after:
            return
        gw = self._gateway_of.get(watch.device.id)
        if gw is not None:
            self._check_gateway(gw, now, out)
            if gw.fingerprint in self._alerts:
                return  # the gateway's alert speaks for all its devices
            # Only a neighbour answering after this device stopped shows the connection works;
            # until one does (or all are silent) this may be the gateway going down.
            proof = last + watch.device.poll_interval
            if not any(
                self._seen.get(d.id, proof) > proof for d in gw.devices if d is not watch.device
            ):
                return
        before = len(out)
        self._step(watch.fingerprint, out, self._comm_lost, watch, last, now)
        if len(out) == before:
            return
        self._mute_points(watch.device.id, now, out)

    def _mute_points(self, device: str, now: datetime, out: list[AlertTransition]) -> None:
        # Point alerts fall silent with their device: one alert per device, not one per point.
        for inst in self._by_fp.values():
            if inst.device.id == device and inst.fingerprint in self._alerts:
                self._step(inst.fingerprint, out, self._no_data, inst, now)

    def _check_gateway(self, gw: _GatewayWatch, now: datetime, out: list[AlertTransition]) -> None:
        """Open the gateway's alert once every device behind it is silent (A8). Devices that
        already have their own communication-loss alert keep it."""
        if gw.fingerprint in self._alerts:
            return
        lasts = []
        for device in gw.devices:
            last = self._silent_since(device.id)
            if now - last < self._comm[device.id].stale_after:
                return
            lasts.append(last)
        before = len(out)
        self._step(gw.fingerprint, out, self._gateway_lost, gw, max(lasts), now)
        if len(out) == before:
            return
        for device in gw.devices:
            self._mute_points(device.id, now, out)

    def _gateway_lost(
        self, cur: AlertRecord | None, gw: _GatewayWatch, last: datetime, now: datetime
    ) -> AlertTransition | None:
        if cur is not None:
            return None
        new = NewAlert(
            fingerprint=gw.fingerprint,
            rule_id=gw.rule_id,
            site=self._site,
            building=gw.building,
            device=gw.gateway_id,
            metric=gw.metric,
            severity=COMMUNICATION_LOSS_SEVERITY,
        )
        n = len(gw.devices)
        title = (
            f"网关 {gw.address} 通信中断（{n} 台设备）"
            if self._language == "zh-CN"
            else f"gateway {gw.address} offline ({n} devices)"
        )
        names = ", ".join(d.id for d in gw.devices)
        req = TicketRequest(
            title=title,
            device=gw.gateway_id,
            building=gw.building,
            fault_class=GATEWAY_OFFLINE_CLASS,
            severity=COMMUNICATION_LOSS_SEVERITY,
            note=f"no answer from any device behind {gw.address} ({names}) since "
            f"{last.isoformat()}",
        )
        rec, ticket = self._tickets.start_alert(new, AlertState.FIRING, now, math.nan, req)
        return self._transition(gw, AlertState.INACTIVE, self._keep(rec), now, math.nan, ticket)

    def _gateway_back(
        self, cur: AlertRecord | None, gw: _GatewayWatch, device: Device, t: datetime
    ) -> AlertTransition | None:
        if cur is None:
            return None
        note = f"communication restored: {device.id} behind {gw.address} answers again"
        rec = self._tickets.resolve_alert(cur, t, 1.0, note=note)
        for d in gw.devices:
            self._quiet_from[d.id] = t
        return self._transition(gw, cur.state, self._keep(rec), t, 1.0)

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
            note=f"rule {rule.id}: {inst.condition.text(v)}",
        )

    @staticmethod
    def _transition(
        inst: _Instance | _CommWatch | _GatewayWatch,
        before: AlertState,
        rec: AlertRecord,
        t: datetime,
        v: float,
        ticket: TicketRecord | None = None,
        *,
        after: AlertState | None = None,
        notify: bool = True,
    ) -> AlertTransition:
        if isinstance(inst, _GatewayWatch):
            device, building = inst.gateway_id, inst.building
        else:
            device, building = inst.device.id, inst.device.location.building
        return AlertTransition(
            fingerprint=inst.fingerprint,
            rule_id=inst.rule_id,
            device=device,
            building=building,
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


def _acked_since(alert: AlertRecord) -> bool:
    """Whether someone acknowledged ``alert`` after its condition cleared (A10)."""
    since = alert.recovering_since
    return alert.acked_at is not None and (since is None or alert.acked_at >= since)


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
