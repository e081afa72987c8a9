"""The oncall section as a user writes it: rotations and overrides that load, and mistakes
reported with file, line and field."""

from __future__ import annotations

from datetime import date, datetime, time

from config.loader import load_config_text
from tests.config.helpers import MINIMAL, problems_of

PEOPLE = """\
oncall:
  people:
    - {id: wang, name: 王强}
    - {id: li, name: 李娜}
  fallback: li
"""


def test_rotations_and_overrides_load_with_their_defaults() -> None:
    text = (
        MINIMAL
        + PEOPLE
        + """\
  rotations:
    - id: eng
      name: 工程部 值班
      members: [wang, li]
      start: 2026-01-05
    - id: nights
      name: Nights
      members: [li]
      handoff: daily
      handoff_time: 20:30
      start: 2026-01-05
      active: {days: [Friday, sat], hours: "20:00-08:00"}
  overrides:
    - {person: li, start: "2026-02-16 09:00", end: 2026-02-18, rotation: eng, reason: 春节}
    - {person: wang, start: "2026-02-16 09:00", end: "2026-02-17 09:00", rotation: nights}
"""
    )
    oc = load_config_text(text, filename="site.yaml", env={}).oncall

    eng, nights = oc.rotations
    assert (eng.handoff, eng.handoff_weekday, eng.handoff_time) == ("weekly", "mon", time(9))
    assert eng.start == date(2026, 1, 5) and eng.active is None
    assert nights.handoff_time == time(20, 30)  # YAML's 1230 read back as a clock time
    assert nights.active is not None
    assert nights.active.days == ["fri", "sat"]
    assert nights.active.spans() == (20 * 60, 32 * 60)
    assert oc.overrides[0].end == datetime(2026, 2, 18)  # a bare date is its midnight
    assert oc.fallback == "li"


def test_unknown_people_and_rotations_point_at_the_field() -> None:
    text = (
        MINIMAL
        + PEOPLE
        + """\
  rotations:
    - id: eng
      name: Eng
      members:
        - wang
        - zhang
      start: 2026-01-05
  overrides:
    - person: zhao
      start: "2026-02-16 09:00"
      end: "2026-02-17 09:00"
      rotation: engineering
"""
    )
    assert problems_of(text) == [
        "site.yaml:14 oncall.rotations[0].members[1]: unknown person 'zhang' (declared: wang, li)",
        "site.yaml:17 oncall.overrides[0].person: unknown person 'zhao' (declared: wang, li)",
        "site.yaml:20 oncall.overrides[0].rotation: unknown rotation 'engineering' (declared: eng)",
    ]


def test_empty_members_bad_times_and_end_before_start() -> None:
    text = (
        MINIMAL
        + PEOPLE
        + """\
  rotations:
    - id: eng
      name: Eng
      members: []
      handoff: hourly
      handoff_time: "25:00"
      start: 2026-01-05
      active: {days: [someday], hours: "08:00-08:00"}
  overrides:
    - person: li
      start: "2026-02-17 09:00"
      end: "2026-02-16 09:00"
"""
    )
    assert problems_of(text) == [
        "site.yaml:12 oncall.rotations[0].members: must have at least 1 entry",
        "site.yaml:13 oncall.rotations[0].handoff: must be one of: daily, weekly (got 'hourly')",
        "site.yaml:14 oncall.rotations[0].handoff_time: expected a local time such as '09:00', "
        "got '25:00'",
        "site.yaml:16 oncall.rotations[0].active.days[0]: must be one of: mon, tue, wed, thu, "
        "fri, sat, sun (got 'someday')",
        "site.yaml:16 oncall.rotations[0].active.hours: '08:00-08:00' is empty; leave 'hours' "
        "out to cover the whole day",
        "site.yaml:20 oncall.overrides[0].end: end (2026-02-16 09:00) must be after start "
        "(2026-02-17 09:00)",
    ]


def test_overlapping_overrides_of_one_rotation() -> None:
    text = (
        MINIMAL
        + PEOPLE
        + """\
  rotations:
    - {id: eng, name: Eng, members: [wang], start: 2026-01-05}
    - {id: lifts, name: Lifts, members: [li], start: 2026-01-05}
  overrides:
    - {person: li, start: "2026-02-16 09:00", end: "2026-02-18 09:00", rotation: eng}
    - {person: wang, start: "2026-02-17 09:00", end: "2026-02-19 09:00", rotation: lifts}
    - {person: wang, start: "2026-02-18 08:00", end: "2026-02-19 09:00", rotation: eng}
    - {person: li, start: "2026-02-18 09:00", end: "2026-02-19 09:00"}
"""
    )
    assert problems_of(text) == [
        "site.yaml:15 oncall.overrides[2].start: overlaps overrides[0] (li, 2026-02-16 09:00 to "
        "2026-02-18 09:00) for rotation 'eng'; end one before the other starts",
        "site.yaml:16 oncall.overrides[3].start: overlaps overrides[1] (wang, 2026-02-17 09:00 "
        "to 2026-02-19 09:00) for rotation 'lifts'; end one before the other starts",
    ]


def test_duplicate_rotation_ids_and_weekday_on_a_daily_rotation() -> None:
    text = (
        MINIMAL
        + PEOPLE
        + """\
  rotations:
    - {id: eng, name: Eng, members: [wang], start: 2026-01-05}
    - {id: eng, name: Eng 2, members: [li], handoff: daily, handoff_weekday: tue,
       start: 2026-01-05}
"""
    )
    assert problems_of(text) == [
        "site.yaml:11 oncall.rotations[1].handoff_weekday: only weekly rotations have a "
        "handoff_weekday",
        "site.yaml:11 oncall.rotations[1].id: duplicate rotation id 'eng' (same as rotations[0])",
    ]
