"""A seeded maintenance team working the tickets of the demo's back-filled history.

``facmon demo`` replays its simulated history through the real alert engine, which opens
tickets at the times the faults happened (``facmon.demo.AlertReplay``). This team then acts on
them as people would have in the console -- only through :class:`~alerts.tickets.TicketStore`'s
public moves and :meth:`~alerts.engine.AlertEngine.acknowledge`, each at an explicit historical
time and under a person's name -- so the maintenance and uptime reports have a history to read:

* lift faults: the lift contractor's on-call technician accepts within minutes, is on site
  within hours, repairs in one to three; now and then the part has to be ordered (ON_HOLD for a
  day or two) or the visit slips to the next day, and those repairs come in late;
* entrapments: the technician accepts at once and frees the passenger on arrival, so the
  arrival is a few minutes before the simulated entrapment ends (the simulator draws how long
  the passenger is shut in: that *is* the rescue time, now and then over the 30-minute limit);
  the fault ticket opened with it is the same visit. The latched entrapment alert is
  acknowledged once the passenger is out, which resolves it;
* people also report jobs no sensor sees (a dripping valve, a noise in the car): a few manual
  tickets a month, dispatched by the property's duty engineer;
* most resolved tickets are closed after a verification a few hours to a day later.

The team acts in time order with the engine: :meth:`TechnicianTeam.act_until` runs what is due
up to the time of the next sample the engine evaluates, and :meth:`TechnicianTeam.observe`
plans work for the tickets the engine opened. A few steps are recorded after the fact at an
earlier time (the rescue's arrival is only known when the entrapment ends), as a technician
fills in the app after freeing a passenger. What would lie after the end of the history is not
done: :meth:`TechnicianTeam.finish` leaves those tickets open where they stand, and reports one
job of the day still under way, so the console and the backlog have something current.

Every random draw of a job comes from a generator seeded by the team's seed and the ticket
number, so a replay of the same history yields the same work.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from alerts.engine import CHATTER_WINDOW, AlertEngine, AlertTransition
from alerts.tickets import (
    AlertState,
    TicketRecord,
    TicketRequest,
    TicketStore,
    TicketTransitionError,
)
from config.models import Device, SiteConfig

log = logging.getLogger(__name__)

ENTRAPMENT_METRIC = "entrapment"
DISPATCHER = "李娜 Li Na"  # the property's duty engineer, when the config names no one on call
LIFT_TECHNICIANS = ("王磊 Wang Lei", "张强 Zhang Qiang", "刘洋 Liu Yang")  # the lift contractor
ENGINEERS = ("赵敏 Zhao Min", "陈刚 Chen Gang")  # the building's electricians and plumbers
PARTS = (
    "门锁触点 / door lock contact",
    "门机皮带 / door operator belt",
    "旋转编码器 / rotary encoder",
    "安全钳开关 / safety gear switch",
)
# (device kind, fault class, severity, what was reported) of the jobs people report by hand.
MANUAL_JOBS: tuple[tuple[str, str, str, str], ...] = (
    ("water_meter", "plumbing", "minor", "泵房阀门滴漏 / Dripping valve in the pump room"),
    ("power_meter", "electrical", "minor", "配电室照明损坏 / Lighting out in the switch room"),
    ("power_meter", "electrical", "major", "租户回路跳闸 / Tenant circuit breaker tripped"),
    (
        "elevator",
        "lift_complaint",
        "minor",
        "乘客反映轿厢异响 / Noise in the car",
    ),
    ("sensor", "sensor_upkeep", "minor", "室外传感器防护罩破损 / Outdoor sensor shield cracked"),
)
_MINUTE = timedelta(minutes=1)
_HOUR = timedelta(hours=1)


@dataclass(frozen=True, slots=True)
class TeamParams:
    """How fast and how reliably the team works; ranges are uniform (low, high)."""

    accept_minutes: tuple[float, float] = (1.0, 8.0)  # page -> accepted, lift faults
    rescue_accept_minutes: tuple[float, float] = (0.5, 3.0)  # page -> accepted, entrapments
    arrival_hours: tuple[float, float] = (0.3, 2.5)  # accepted -> on site, lift faults
    next_day_share: float = 0.08  # lift-fault visits put off to the next day (late)
    next_day_hours: tuple[float, float] = (22.0, 30.0)  # created -> on site when put off
    repair_hours: tuple[float, float] = (0.5, 3.0)  # work started -> resolved
    hold_share: float = 0.15  # repairs that wait for a part
    hold_hours: tuple[float, float] = (18.0, 60.0)
    freeing_minutes: tuple[float, float] = (1.0, 4.0)  # on site -> passenger out
    check_minutes: tuple[float, float] = (20.0, 90.0)  # passenger out -> rescue ticket resolved
    late_check_share: float = 0.15  # lifts handed back only after the contractor's check
    late_check_hours: tuple[float, float] = (4.5, 8.0)  # created -> resolved, those
    ack_alert_minutes: tuple[float, float] = (1.0, 5.0)  # passenger out -> latched alert acked
    close_share: float = 0.85  # resolved tickets verified and closed; the rest stay RESOLVED
    close_hours: tuple[float, float] = (2.0, 30.0)
    manual_per_month: float = 2.5  # jobs people report by hand
    dispatch_minutes: tuple[float, float] = (5.0, 30.0)  # reported -> assigned, manual jobs
    manual_accept_minutes: tuple[float, float] = (5.0, 60.0)  # assigned -> accepted
    manual_arrival_hours: tuple[float, float] = (0.5, 4.0)  # accepted -> on site

    def __post_init__(self) -> None:
        for name in (
            "next_day_share",
            "hold_share",
            "late_check_share",
            "close_share",
        ):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in [0, 1]")
        if self.manual_per_month < 0:
            raise ValueError("manual_per_month must not be negative")


@dataclass(slots=True)
class TeamStats:
    """What the team did, for the demo's start-up line and the tests."""

    jobs: int = 0  # repairs planned (new tickets and reopenings)
    manual: int = 0  # tickets people reported by hand
    actions: int = 0  # ticket moves and acknowledgements written
    refused: int = 0  # moves the lifecycle refused (the job was dropped)


@dataclass(slots=True)
class _Job:
    """One repair on one ticket (a reopening starts a new one)."""

    ticket: TicketRecord
    who: str
    rng: random.Random
    created: datetime  # of this repair: the ticket's creation or its reopening
    accepted: datetime | None = None
    resolved: bool = False
    dead: bool = False  # superseded by a reopening, or refused by the lifecycle
    # Lift faults opened with an entrapment wait for its rescue, whose visit they share.
    riders: list[_Job] = field(default_factory=list)


def _u(rng: random.Random, span: tuple[float, float]) -> float:
    return rng.uniform(*span)


_Due = tuple[datetime, int, "_Job | None", Callable[[], object]]


class TechnicianTeam:
    """Acts on the tickets ``engine`` opens in ``tickets`` from ``start`` on; see the module
    doc. Call :meth:`act_until` before each evaluation and :meth:`observe` with the
    transitions it returned, then :meth:`finish` at the end of the history."""

    def __init__(
        self,
        config: SiteConfig,
        tickets: TicketStore,
        engine: AlertEngine,
        start: datetime,
        *,
        seed: int = 1,
        params: TeamParams | None = None,
        open_from: datetime | None = None,
    ) -> None:
        if start.tzinfo is None or (open_from is not None and open_from.tzinfo is None):
            raise ValueError("start and open_from must be timezone-aware")
        # Repairs that start from then on are worked but not finished: the work of the last
        # day is still under way when the history ends.
        self._open_from = open_from
        self._tickets = tickets
        self._engine = engine
        self._seed = seed
        self._p = params or TeamParams()
        self._tz = ZoneInfo(config.site.timezone)
        people = config.oncall.people
        self.dispatcher = people[0].name if people else DISPATCHER
        # Latched rules and how long their alerts hold after clearing: an acknowledgement only
        # resolves one whose hold has run out (A6, A10), so the team waits that long.
        self._latched = {
            r.id: max(r.keep_firing_for, CHATTER_WINDOW) for r in config.rules if r.latched
        }
        self._devices: dict[str, Device] = {d.id: d for d in config.devices}
        self._manual_jobs = [j for j in MANUAL_JOBS if any(d.kind == j[0] for d in config.devices)]
        self._jobs: dict[int, _Job] = {}  # the current repair of each ticket worked on
        self._rescues: dict[str, _Job] = {}  # entrapment alert fingerprint -> rescue under way
        self._due: list[_Due] = []
        self._seq = itertools.count()
        self._rng = random.Random(f"{seed}/manual")
        self._start = start
        self._next_manual = self._after_manual(start)
        self.stats = TeamStats()

    # -- driving -------------------------------------------------------------------------------
    def act_until(self, t: datetime) -> None:
        """Do everything due at or before ``t``, in time order."""
        while True:
            at = self._due[0][0] if self._due else None
            manual = self._next_manual
            if manual is not None and manual <= t and (at is None or manual < at):
                self._next_manual = self._after_manual(manual)
                self._report(manual, self._rng)
                continue
            if at is None or at > t:
                return
            _, _, job, act = heapq.heappop(self._due)
            if job is None or not job.dead:
                self._do(job, act)

    def observe(self, transitions: Sequence[AlertTransition]) -> None:
        """Plan work for the tickets these transitions opened (an occurrence on a ticket being
        worked on needs none), and the rescue once an entrapment clears."""
        opened = [tr for tr in transitions if tr.ticket is not None]
        # Rescues first: a lift fault of the same moment rides along with its rescue.
        opened.sort(key=lambda tr: tr.metric != ENTRAPMENT_METRIC)
        for tr in opened:
            assert tr.ticket is not None
            job = self._jobs.get(tr.ticket.id)
            if job is None or job.resolved:
                self._start_job(tr, tr.ticket, job)
        for tr in transitions:
            if tr.before in _EPISODE and tr.after in _CLEARED:
                self._cleared(tr)

    def finish(self, now: datetime) -> None:
        """End of the history: do what is due by ``now`` and leave the rest undone (those
        tickets stay open where they stand); then a job reported a few hours ago, accepted
        and still ahead of its technician."""
        self.act_until(now)
        self._due.clear()
        self._rescues.clear()
        self._next_manual = None
        rng = random.Random(f"{self._seed}/today")
        at = now - rng.uniform(2.0, 6.0) * _HOUR
        if at <= self._start or not self._manual_jobs:
            return
        job = self._report(at, rng, plan=False)
        if job is None:
            return
        assigned = at + rng.uniform(5, 20) * _MINUTE
        job.accepted = assigned + rng.uniform(5, 40) * _MINUTE
        self._do(job, lambda: self._assign(job, assigned))
        self._do(job, lambda: self._accept(job, "收到, 下午处理 / Acknowledged; this afternoon"))

    # -- planning ------------------------------------------------------------------------------
    def _start_job(self, tr: AlertTransition, ticket: TicketRecord, old: _Job | None) -> None:
        if old is not None:
            old.dead = True  # its leftover steps (a pending close) belonged to the last repair
        job = self._new_job(ticket, tr.at)
        rng, rescue, p = job.rng, tr.metric == ENTRAPMENT_METRIC, self._p
        along = None if rescue else self._rescue_on(ticket.device)
        if along is not None:
            # The technician on the way to the rescue takes this one too.
            assert along.accepted is not None
            job.who, job.accepted = along.who, max(along.accepted, tr.at)
            along.riders.append(job)
        else:
            span = p.rescue_accept_minutes if rescue else p.accept_minutes
            job.accepted = tr.at + _u(rng, span) * _MINUTE
        note = "接警, 立即出发 / On my way" if rescue else "收到 / Acknowledged"
        assert job.accepted is not None
        self._at(job.accepted, job, lambda: self._accept(job, note))
        if rescue:
            self._rescues[tr.fingerprint] = job
        elif along is None:
            self._plan_repair(job, self._arrival(job))

    def _new_job(self, ticket: TicketRecord, at: datetime) -> _Job:
        rng = random.Random(f"{self._seed}/{ticket.number}/{ticket.reopen_count}")
        who = rng.choice(LIFT_TECHNICIANS if self._is_lift(ticket) else ENGINEERS)
        job = _Job(ticket, who, rng, at)
        self._jobs[ticket.id] = job
        self.stats.jobs += 1
        return job

    def _rescue_on(self, device: str) -> _Job | None:
        return next((r for r in self._rescues.values() if r.ticket.device == device), None)

    def _arrival(self, job: _Job) -> datetime:
        p, rng = self._p, job.rng
        assert job.accepted is not None
        if rng.random() < p.next_day_share:
            return max(job.created + _u(rng, p.next_day_hours) * _HOUR, job.accepted + _MINUTE)
        return job.accepted + _u(rng, p.arrival_hours) * _HOUR

    def _plan_repair(self, job: _Job, arrival: datetime, started: datetime | None = None) -> None:
        """On site at ``arrival``, work, maybe a hold for a part, resolve, verify."""
        p, rng, who, tid = self._p, job.rng, job.who, job.ticket.id
        self._at(arrival, job, lambda: self._tickets.record_arrival(tid, arrival, who, "到场"))
        begin = started or arrival + rng.uniform(2, 10) * _MINUTE
        self._at(begin, job, lambda: self._tickets.start_work(tid, begin, who, "开始检修"))
        t = begin
        if rng.random() < p.hold_share:
            held = t + rng.uniform(0.3, 1.0) * _HOUR
            reason = f"等待备件 / Waiting for a part: {rng.choice(PARTS)}"
            resume = held + _u(rng, p.hold_hours) * _HOUR
            back = resume.astimezone(self._tz)  # the note shows the site's local time
            self._at(held, job, lambda: self._tickets.hold_ticket(tid, held, who, reason, back))
            self._at(resume, job, lambda: self._tickets.resume_work(tid, resume, who, "备件到货"))
            t = resume
        done = t + _u(rng, p.repair_hours) * _HOUR
        self._resolve(job, done, "故障已排除, 试运行正常 / Fault cleared; test runs normal")

    def _cleared(self, tr: AlertTransition) -> None:
        """An alert's condition cleared at ``tr.at``: for an entrapment the passenger is out,
        freed by the technician who arrived a few minutes before."""
        job = self._rescues.pop(tr.fingerprint, None)
        rng = job.rng if job is not None else random.Random(f"{self._seed}/alert/{tr.alert_id}")
        p = self._p
        hold = self._latched.get(tr.rule_id)
        if hold is not None and tr.after is AlertState.RECOVERING:
            who = job.who if job is not None else self.dispatcher
            acked = tr.at + max(_u(rng, p.ack_alert_minutes) * _MINUTE, hold + _MINUTE)
            fp = tr.fingerprint
            self._at(acked, None, lambda: self._acknowledge(fp, who, acked))
        if job is None:
            return
        assert job.accepted is not None
        tid, who = job.ticket.id, job.who
        arrived = max(tr.at - _u(rng, p.freeing_minutes) * _MINUTE, job.accepted + _MINUTE)
        freeing = max(min(arrived + 0.5 * _MINUTE, tr.at), arrived)
        self._at(arrived, job, lambda: self._tickets.record_arrival(tid, arrived, who, "到场救援"))
        self._at(freeing, job, lambda: self._tickets.start_work(tid, freeing, who, "盘车放人"))
        if rng.random() < p.late_check_share:
            done = job.created + _u(rng, p.late_check_hours) * _HOUR
            note = "维保单位安全检查后恢复运行 / Back in service after the contractor's check"
        else:
            done = tr.at + _u(rng, p.check_minutes) * _MINUTE
            note = "乘客已安全救出, 电梯检查正常 / Passenger freed safely; lift checked"
        self._resolve(job, max(done, freeing + _MINUTE), note)
        for rider in job.riders:
            started = max(tr.at, arrived) + rider.rng.uniform(5, 15) * _MINUTE
            self._plan_repair(rider, arrived, started)

    def _resolve(self, job: _Job, at: datetime, note: str) -> None:
        if self._open_from is not None and job.created >= self._open_from:
            return
        tid, who, p, rng = job.ticket.id, job.who, self._p, job.rng

        def resolve() -> None:
            self._tickets.resolve_ticket(tid, at, who, note)
            job.resolved = True

        self._at(at, job, resolve)
        if rng.random() < p.close_share:
            closed = at + _u(rng, p.close_hours) * _HOUR
            verified = "复核: 设备运行正常 / Verified on site: back in normal service"
            boss = self.dispatcher
            self._at(closed, job, lambda: self._tickets.close_ticket(tid, closed, boss, verified))

    # -- manual tickets ------------------------------------------------------------------------
    def _after_manual(self, t: datetime) -> datetime | None:
        """When the next job is reported by hand: a Poisson process, moved into working hours."""
        rate = self._p.manual_per_month / 30.0
        if rate <= 0 or not self._manual_jobs:
            return None
        at = (t + timedelta(days=self._rng.expovariate(rate))).astimezone(self._tz)
        if not 8 <= at.hour < 18:
            day = at.date() if at.hour < 8 else at.date() + timedelta(days=1)
            at = datetime(day.year, day.month, day.day, 8, tzinfo=self._tz)
            at += self._rng.uniform(0.0, 9.0) * _HOUR
        return at

    def _report(self, at: datetime, rng: random.Random, *, plan: bool = True) -> _Job | None:
        kind, fault_class, severity, what = rng.choice(self._manual_jobs)
        device = rng.choice([d for d in self._devices.values() if d.kind == kind])
        req = TicketRequest(
            title=f"{device.name}: {what}",
            device=device.id,
            building=device.location.building,
            fault_class=fault_class,
            severity=severity,
            note="物业前台报修 / Reported at the front desk",
        )
        ticket = self._tickets.open_or_add_occurrence(req, at)
        self.stats.manual += 1
        old = self._jobs.get(ticket.id)
        if old is not None and not old.resolved:
            return None  # the same job was reported before and is still being worked on
        if old is not None:
            old.dead = True  # reopened (D4): a new repair
        job = self._new_job(ticket, at)
        if not plan:
            return job
        p, rng = self._p, job.rng
        assigned = at + _u(rng, p.dispatch_minutes) * _MINUTE
        self._at(assigned, job, lambda: self._assign(job, assigned))
        job.accepted = assigned + _u(rng, p.manual_accept_minutes) * _MINUTE
        self._at(job.accepted, job, lambda: self._accept(job, "收到 / Acknowledged"))
        self._plan_repair(job, job.accepted + _u(rng, p.manual_arrival_hours) * _HOUR)
        return job

    # -- moves ---------------------------------------------------------------------------------
    def _accept(self, job: _Job, note: str) -> None:
        assert job.accepted is not None
        job.ticket = self._tickets.accept_ticket(job.ticket.id, job.accepted, job.who, note)

    def _assign(self, job: _Job, at: datetime) -> None:
        job.ticket = self._tickets.assign_ticket(job.ticket.id, at, self.dispatcher, job.who)

    def _acknowledge(self, fingerprint: str, who: str, at: datetime) -> None:
        with contextlib.suppress(KeyError):  # resolved meanwhile: nothing left to acknowledge
            self._engine.acknowledge(fingerprint, who, at)

    def _at(self, at: datetime, job: _Job | None, act: Callable[[], object]) -> None:
        heapq.heappush(self._due, (at, next(self._seq), job, act))

    def _do(self, job: _Job | None, act: Callable[[], object]) -> None:
        try:
            act()
        except TicketTransitionError as e:
            # A move the lifecycle refuses ends this job; the ticket stays where it is.
            log.debug("technicians: %s", e)
            self.stats.refused += 1
            if job is not None:
                job.dead = True
            return
        self.stats.actions += 1

    def _is_lift(self, ticket: TicketRecord) -> bool:
        device = self._devices.get(ticket.device)
        return device is not None and device.kind == "elevator"


_EPISODE = frozenset({AlertState.FIRING, AlertState.NODATA})
_CLEARED = frozenset({AlertState.RECOVERING, AlertState.RESOLVED})
