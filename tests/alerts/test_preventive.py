"""Preventive maintenance schedules (T8 of ../shared/alerting-semantics.md): tickets that recur
from the scheduled date or from the last completion, open ``lead`` days ahead, never twice
while one is open, and survive a restart. Time is stepped through ``now=`` against a real
ticket database (SQLite file and the running PostgreSQL)."""

from __future__ import annotations

import asyncio
import textwrap
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from alerts import TicketStatus, TicketStore
from alerts.preventive import JobState, is_preventive, load_history, open_due, plan, run_preventive
from config import ConfigError, SiteConfig
from config.loader import load_config_text
from config.maintenance import add_months

SH = ZoneInfo("Asia/Shanghai")

SITE = """\
site: {id: riverside, name: 滨江广场, timezone: Asia/Shanghai, language: zh-CN}
buildings:
  - {id: A, name: A座, floor_area_m2: 20000, floors: 20}
devices:
  - id: el-1
    name: 1号梯
    kind: elevator
    location: {building: A, floor: B1}
    source: {type: modbus_tcp, host: 127.0.0.1, port: 15030, unit_id: 1, profile: elevator_gbt24476}
  - id: el-2
    name: 2号梯
    kind: elevator
    location: {building: A, floor: B1}
    source: {type: modbus_tcp, host: 127.0.0.1, port: 15030, unit_id: 2, profile: elevator_gbt24476}
  - id: pm-1
    name: 1号配电柜
    kind: power_meter
    location: {building: A, floor: B1}
    source: {type: modbus_tcp, host: 127.0.0.1, port: 15021, profile: generic_power_meter_3p}
"""

SCHEDULES = """\
maintenance:
  schedules:
    - id: lift-15d
      name: {zh-CN: 电梯半月维保, en: elevator 15-day maintenance}
      select: {kinds: [elevator]}
      every: 15d
      first_due: 2026-12-01
      lead: 3d
      note: TSG T5002
    - id: panel-ir
      name: 配电柜红外测温
      select: {devices: [pm-1]}
      every: quarter
      anchor: completion
      first_due: 2026-12-10
      priority: P2
"""


def local(y: int, mo: int, d: int, h: int = 0, mi: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, tzinfo=SH)


def site(text: str = SITE + SCHEDULES) -> SiteConfig:
    return load_config_text(text, filename="site.yaml", env={})


@pytest.fixture
def tickets(db_url: str) -> Iterator[TicketStore]:
    store = TicketStore(db_url)
    yield store
    store.close()


def opened(cfg: SiteConfig, tickets: TicketStore, now: datetime) -> list[tuple[str, str]]:
    return sorted((t.device, t.fault_class) for t in open_due(cfg, tickets, now))


def lifts(cfg: SiteConfig, tickets: TicketStore, now: datetime) -> list[str]:
    return [d for d, fc in opened(cfg, tickets, now) if fc == "preventive:lift-15d"]


def test_a_ticket_opens_lead_days_before_the_scheduled_date(tickets: TicketStore) -> None:
    cfg = site()
    assert opened(cfg, tickets, local(2026, 11, 27, 23, 59)) == []
    at = local(2026, 11, 28)  # 2026-12-01 minus the 3 days' lead, local midnight
    assert opened(cfg, tickets, at) == [
        ("el-1", "preventive:lift-15d"),
        ("el-2", "preventive:lift-15d"),
    ]
    [t1, _] = sorted(tickets.list_tickets().items, key=lambda t: t.device)
    assert t1.title == "1号梯: 电梯半月维保" and t1.priority == "P3"
    assert t1.created_at == at and t1.due_at == local(2026, 12, 2)  # the end of the due day
    assert is_preventive(t1.fault_class) and not is_preventive("elevator_fault")
    detail = tickets.get_ticket(t1.id)
    assert detail is not None
    assert detail.events[0].kind == "created"
    assert detail.events[0].note == (
        "preventive maintenance lift-15d, due 2026-12-01 (every 15d, counted from scheduled "
        "dates): TSG T5002"
    )
    # Checking again opens nothing and adds no occurrence.
    assert opened(cfg, tickets, at + timedelta(minutes=5)) == []
    assert [t.occurrences for t in tickets.list_tickets().items] == [1, 1]


def test_schedule_anchor_no_new_ticket_while_the_previous_is_open(tickets: TicketStore) -> None:
    cfg = site()
    open_due(cfg, tickets, local(2026, 11, 28))
    by_device = {t.device: t for t in tickets.list_tickets().items}
    # el-2 is done on time; el-1 is not.
    tickets.resolve_ticket(by_device["el-2"].id, local(2026, 12, 1, 15), "wang", "done")

    # The next job is due 12-16 and opens 12-13: only for el-2.
    assert lifts(cfg, tickets, local(2026, 12, 12, 23)) == []
    assert lifts(cfg, tickets, local(2026, 12, 13)) == ["el-2"]
    jobs = {j.device.id: j for j in plan(cfg, load_history(tickets), local(2026, 12, 13, 8))}
    assert jobs["el-1"].state is JobState.OVERDUE and jobs["el-1"].due == date(2026, 12, 1)
    assert jobs["el-2"].state is JobState.OPEN and jobs["el-2"].due == date(2026, 12, 16)
    # panel-ir's first job (12-10) had its ticket opened only at the check of 12-12 23:00.
    assert jobs["pm-1"].state is JobState.OVERDUE and jobs["pm-1"].due == date(2026, 12, 10)

    # el-1 finally done on 12-20: the job of 12-16 is owed still (the dates are fixed), so it
    # opens at once, as a new ticket and not as a reopening of the one just resolved.
    first = by_device["el-1"]
    tickets.resolve_ticket(first.id, local(2026, 12, 20, 10), "li", "done late")
    assert lifts(cfg, tickets, local(2026, 12, 20, 10, 5)) == ["el-1"]
    [new] = [t for t in tickets.list_tickets(device="el-1").items if t.id != first.id]
    assert new.status is TicketStatus.NEW and new.reopen_count == 0
    assert new.due_at == local(2026, 12, 17)
    old = tickets.get_ticket(first.id)
    assert old is not None and old.ticket.status is TicketStatus.RESOLVED
    # And the one after that follows the fixed dates: due 12-31, opening 12-28.
    assert lifts(cfg, tickets, local(2026, 12, 27, 23)) == []
    tickets.resolve_ticket(new.id, local(2026, 12, 21), "li", "done")
    assert lifts(cfg, tickets, local(2026, 12, 27, 23)) == []
    assert "el-1" in lifts(cfg, tickets, local(2026, 12, 28))


def test_completion_anchor_counts_from_the_last_completion(tickets: TicketStore) -> None:
    cfg = site()
    assert ("pm-1", "preventive:panel-ir") not in opened(cfg, tickets, local(2026, 12, 9, 23))
    assert opened(cfg, tickets, local(2026, 12, 10)) == [("pm-1", "preventive:panel-ir")]
    [t] = tickets.list_tickets(device="pm-1").items
    assert (t.priority, t.due_at, t.title) == (
        "P2",
        local(2026, 12, 11),
        "1号配电柜: 配电柜红外测温",
    )

    # Done two days late: the next one is a quarter after that day, not after 12-10.
    tickets.resolve_ticket(t.id, local(2026, 12, 12, 15), "zhao", "done")
    [job] = [
        j for j in plan(cfg, load_history(tickets), local(2026, 12, 13)) if j.device.id == "pm-1"
    ]
    assert (job.state, job.due, job.opens_at) == (
        JobState.UPCOMING,
        date(2027, 3, 12),
        local(2027, 3, 12),
    )
    assert ("pm-1", "preventive:panel-ir") not in opened(cfg, tickets, local(2027, 3, 11, 23))
    assert ("pm-1", "preventive:panel-ir") in opened(cfg, tickets, local(2027, 3, 12))


def test_a_restart_neither_repeats_nor_skips_a_job(db_url: str) -> None:
    cfg = site()
    first = TicketStore(db_url)
    assert len(open_due(cfg, first, local(2026, 11, 28))) == 2
    first.close()

    # A new process: everything comes from the ticket database.
    second = TicketStore(db_url)
    try:
        assert open_due(cfg, second, local(2026, 11, 28, 0, 5)) == []
        states = sorted(
            (j.device.id, j.state.value)
            for j in plan(cfg, load_history(second), local(2026, 11, 29))
        )
        assert states == [("el-1", "open"), ("el-2", "open"), ("pm-1", "upcoming")]
        assert second.list_tickets().total == 2
    finally:
        second.close()


def test_the_runner_opens_due_tickets_in_the_running_process(tickets: TicketStore) -> None:
    cfg = site()
    made: list[str] = []

    async def run() -> None:
        task = asyncio.create_task(
            run_preventive(
                lambda: cfg,
                tickets,
                clock=lambda: local(2026, 12, 10, 9),
                opened=lambda ts: made.extend(t.device for t in ts),
            )
        )
        try:
            for _ in range(250):
                if made:
                    break
                await asyncio.sleep(0.02)
        finally:
            task.cancel()

    asyncio.run(run())
    assert sorted(made) == ["el-1", "el-2", "pm-1"]


def test_calendar_steps_clamp_to_the_end_of_shorter_months() -> None:
    assert add_months(date(2026, 1, 31), 1) == date(2026, 2, 28)
    assert add_months(date(2026, 1, 31), 6) == date(2026, 7, 31)
    assert add_months(date(2026, 11, 30), 3) == date(2027, 2, 28)
    cfg = site(
        SITE
        + textwrap.dedent(
            """\
            maintenance:
              schedules:
                - {id: tank, name: 水箱清洗, select: {devices: [pm-1]}, every: half_year,
                   first_due: 2026-01-31}
            """
        )
    )
    [s] = cfg.maintenance.schedules
    assert [s.nth_due(k) for k in range(3)] == [
        date(2026, 1, 31),
        date(2026, 7, 31),
        date(2027, 1, 31),
    ]
    # Never opened, first due long ago: one ticket for the newest job, not a backlog.
    [job] = plan(cfg, {}, datetime(2027, 2, 1, tzinfo=UTC))
    assert (job.due, job.state) == (date(2027, 1, 31), JobState.DUE_NOW)


@pytest.mark.parametrize(
    ("fields", "path", "message"),
    [
        (["every: 36h"], "maintenance.schedules[0].every", "whole days"),
        (["every: fortnight"], "maintenance.schedules[0].every", "expected a duration"),
        (["every: 15d", "lead: 15d"], "maintenance.schedules[0]", "lead (15d) must be shorter"),
        (["every: 15d", "lead: 36h"], "maintenance.schedules[0].lead", "whole days"),
        (["every: 15d", "anchor: later"], "maintenance.schedules[0].anchor", "schedule"),
    ],
)
def test_schedule_errors_name_file_line_and_field(
    fields: list[str], path: str, message: str
) -> None:
    lines = [
        "maintenance:",
        "  schedules:",
        "    - id: lift",
        "      name: 维保",
        "      select: {kinds: [elevator]}",
        "      first_due: 2026-12-01",
        *(f"      {f}" for f in fields),
    ]
    with pytest.raises(ConfigError) as e:
        site(SITE + "\n".join(lines) + "\n")
    [problem] = e.value.problems
    assert problem.file == "site.yaml" and problem.line is not None
    assert problem.line > SITE.count("\n")  # in the maintenance block
    assert problem.path == path and message in problem.message


def test_duplicate_schedules_and_unknown_devices_are_reported_where_they_are() -> None:
    text = SITE + textwrap.dedent(
        """\
        maintenance:
          schedules:
            - {id: lift, name: a, select: {devices: [el-9]}, every: 15d, first_due: 2026-12-01}
            - {id: lift, name: b, select: {kinds: [elevator]}, every: month, first_due: 2026-12-01}
        """
    )
    with pytest.raises(ConfigError) as e:
        site(text)
    found = sorted((p.line, p.path, p.message.split(" (")[0]) for p in e.value.problems)
    n = SITE.count("\n")
    assert found == [
        (n + 3, "maintenance.schedules[0].select.devices[0]", "unknown device 'el-9'"),
        (n + 4, "maintenance.schedules[1].id", "duplicate schedule id 'lift'"),
    ]
