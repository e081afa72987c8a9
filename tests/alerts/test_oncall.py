"""Who is on call (E6): rotations, handoffs at local times across DST, overrides, the fallback,
active windows and coverage gaps. Times are passed in; nothing sleeps."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from alerts.oncall import coverage_gaps, shifts, who_is_on_call
from config.models import OnCall

SHANGHAI = ZoneInfo("Asia/Shanghai")
BERLIN = ZoneInfo("Europe/Berlin")
PEOPLE = [
    {"id": "a", "name": "Anna"},
    {"id": "b", "name": "王强"},
    {"id": "c", "name": "Chen"},
    {"id": "boss", "name": "李娜"},
]


def oncall(
    *rotations: dict[str, Any],
    overrides: list[dict[str, Any]] | None = None,
    fallback: str | None = "boss",
) -> OnCall:
    return OnCall.model_validate(
        {
            "people": PEOPLE,
            "fallback": fallback,
            "rotations": list(rotations),
            "overrides": overrides or [],
        }
    )


def daily(**extra: Any) -> dict[str, Any]:
    return {
        "id": "tech",
        "name": "Technicians",
        "members": ["a", "b", "c"],
        "handoff": "daily",
        "handoff_time": "08:30",
        "start": "2026-11-02",
        **extra,
    }


def weekly(**extra: Any) -> dict[str, Any]:
    return {
        "id": "eng",
        "name": "Engineering",
        "members": ["a", "b"],
        "handoff": "weekly",
        "start": "2026-11-02",  # a Monday; handoff mon 09:00 by default
        **extra,
    }


def at(tz: ZoneInfo, *parts: int) -> datetime:
    return datetime(*parts, tzinfo=tz)  # type: ignore[arg-type, misc]


def who(oc: OnCall, t: datetime, tz: ZoneInfo = SHANGHAI, rotation: str | None = None) -> str:
    a = who_is_on_call(oc, tz, t, rotation)
    return f"{a.person.id if a.person else '-'}:{a.source}"


# -- rotations --------------------------------------------------------------------------------


def test_daily_handoff_happens_exactly_at_the_handoff_time() -> None:
    oc = oncall(daily())
    handoff = at(SHANGHAI, 2026, 11, 3, 8, 30)

    assert who(oc, handoff - timedelta(microseconds=1)) == "a:rotation"
    assert who(oc, handoff) == "b:rotation"  # shifts are [start, end)
    assert who(oc, handoff + timedelta(days=1)) == "c:rotation"
    assert who(oc, handoff + timedelta(days=2)) == "a:rotation"  # members repeat in order

    answer = who_is_on_call(oc, SHANGHAI, handoff + timedelta(hours=5))
    assert answer.rotation == "tech"
    assert answer.start == handoff
    assert answer.end == handoff + timedelta(days=1)
    assert answer.end is not None and answer.end.tzinfo == SHANGHAI


def test_before_the_rotation_starts_the_fallback_is_paged() -> None:
    oc = oncall(daily())
    first = at(SHANGHAI, 2026, 11, 2, 8, 30)

    before = who_is_on_call(oc, SHANGHAI, first - timedelta(minutes=1))
    assert (before.person and before.person.id, before.source) == ("boss", "fallback")
    assert before.end == first
    assert who(oc, first) == "a:rotation"


def test_weekly_handoff_on_the_handoff_weekday() -> None:
    oc = oncall(weekly())
    monday = at(SHANGHAI, 2026, 11, 9, 9, 0)

    assert who(oc, monday - timedelta(seconds=1)) == "a:rotation"
    assert who(oc, monday) == "b:rotation"
    assert who(oc, monday + timedelta(days=6, hours=23)) == "b:rotation"
    assert who(oc, monday + timedelta(days=7)) == "a:rotation"
    answer = who_is_on_call(oc, SHANGHAI, at(SHANGHAI, 2026, 11, 12, 3, 0))
    assert (answer.start, answer.end) == (monday, monday + timedelta(days=7))


def test_weekly_rotation_starting_mid_week_has_a_short_first_shift() -> None:
    oc = oncall(weekly(start="2026-11-04", handoff_weekday="friday", handoff_time="18:00"))

    s = shifts(oc, SHANGHAI, at(SHANGHAI, 2026, 11, 4), at(SHANGHAI, 2026, 11, 21), "eng")

    assert [(x.start.day, x.person and x.person.id) for x in s] == [
        (4, "boss"),  # before 18:00 on the start date: fallback
        (4, "a"),  # Wed 18:00 .. Fri 18:00
        (6, "b"),
        (13, "a"),
        (20, "b"),
    ]
    assert s[1].end == at(SHANGHAI, 2026, 11, 6, 18, 0)


def test_long_running_rotation_counts_turns_from_its_start() -> None:
    oc = oncall(weekly(start="2020-01-06"))  # a Monday, years before
    # 2026-11-23 is 359 weeks after 2020-01-06: an odd turn, the second member.
    assert who(oc, at(SHANGHAI, 2026, 11, 25, 12)) == "b:rotation"
    assert who(oc, at(SHANGHAI, 2026, 11, 30, 12)) == "a:rotation"


def test_unquoted_yaml_time_is_read_as_a_clock_time() -> None:
    # YAML 1.1 reads `handoff_time: 10:30` as the sexagesimal number 630.
    oc = oncall(daily(handoff_time=630))
    assert oc.rotations[0].handoff_time.isoformat() == "10:30:00"


# -- DST --------------------------------------------------------------------------------------


def test_handoffs_keep_local_time_across_spring_forward() -> None:
    oc = oncall(daily(start="2026-03-27", handoff_time="09:00"))
    # Europe/Berlin moves from +01:00 to +02:00 at 02:00 on Sunday 2026-03-29.
    s = shifts(oc, BERLIN, at(BERLIN, 2026, 3, 28, 9), at(BERLIN, 2026, 3, 30, 9), "tech")

    assert [x.start.strftime("%d %H:%M %z") for x in s] == ["28 09:00 +0100", "29 09:00 +0200"]
    assert s[0].duration == timedelta(hours=23)  # the short night
    assert s[1].duration == timedelta(hours=24)
    assert s[0].end.astimezone(UTC) == datetime(2026, 3, 29, 7, 0, tzinfo=UTC)
    assert who(oc, datetime(2026, 3, 29, 6, 59, tzinfo=UTC), BERLIN) == "b:rotation"
    assert who(oc, datetime(2026, 3, 29, 7, 0, tzinfo=UTC), BERLIN) == "c:rotation"


def test_handoffs_keep_local_time_across_fall_back() -> None:
    oc = oncall(daily(start="2026-10-23", handoff_time="09:00"))
    # +02:00 -> +01:00 at 03:00 on Sunday 2026-10-25.
    s = shifts(oc, BERLIN, at(BERLIN, 2026, 10, 24, 9), at(BERLIN, 2026, 10, 26, 9), "tech")

    assert [x.duration for x in s] == [timedelta(hours=25), timedelta(hours=24)]
    assert s[1].start.strftime("%H:%M %z") == "09:00 +0100"


def test_shanghai_has_no_dst_and_answers_in_its_zone() -> None:
    oc = oncall(daily(start="2026-03-27"))
    s = shifts(oc, SHANGHAI, at(SHANGHAI, 2026, 3, 28, 8, 30), at(SHANGHAI, 2026, 3, 31), "tech")
    assert {x.duration for x in s[:-1]} == {timedelta(hours=24)}
    # A time asked in UTC is answered with times in the site's zone.
    a = who_is_on_call(oc, SHANGHAI, datetime(2026, 3, 29, 0, 30, tzinfo=UTC))
    assert a.start is not None and a.start.strftime("%d %H:%M %z") == "29 08:30 +0800"


# -- overrides --------------------------------------------------------------------------------


def test_override_beats_the_rotation_and_ends_when_it_ends() -> None:
    oc = oncall(
        weekly(),
        overrides=[
            {
                "person": "c",
                "start": "2026-11-05 18:00",
                "end": "2026-11-06 08:00",
                "reason": "swap",
            }
        ],
    )
    t = at(SHANGHAI, 2026, 11, 5, 20, 0)

    a = who_is_on_call(oc, SHANGHAI, t)
    assert (a.person and a.person.id, a.source, a.reason) == ("c", "override", "swap")
    assert a.start == at(SHANGHAI, 2026, 11, 5, 18)
    assert a.end == at(SHANGHAI, 2026, 11, 6, 8)
    assert who(oc, at(SHANGHAI, 2026, 11, 6, 8, 0)) == "a:rotation"  # the end is exclusive
    # The rotation's member gets the rest of the week back from the override's end.
    back = who_is_on_call(oc, SHANGHAI, at(SHANGHAI, 2026, 11, 6, 9))
    assert back.start == at(SHANGHAI, 2026, 11, 6, 8)
    assert back.end == at(SHANGHAI, 2026, 11, 9, 9)


def test_override_of_one_rotation_leaves_the_other_alone() -> None:
    oc = oncall(
        weekly(),
        daily(),
        overrides=[
            {
                "person": "boss",
                "start": "2026-11-05 00:00",
                "end": "2026-11-06 00:00",
                "rotation": "tech",
            }
        ],
    )
    t = at(SHANGHAI, 2026, 11, 5, 12)
    assert who(oc, t, rotation="tech") == "boss:override"
    assert who(oc, t, rotation="eng") == "a:rotation"
    # For the site as a whole any override beats any rotation.
    assert who(oc, t) == "boss:override"


def test_override_with_an_offset_is_taken_as_given() -> None:
    oc = oncall(
        weekly(),
        overrides=[{"person": "c", "start": "2026-11-05T10:00:00Z", "end": "2026-11-05T12:00Z"}],
    )
    assert who(oc, at(SHANGHAI, 2026, 11, 5, 18, 30)) == "c:override"  # 10:30 UTC
    assert who(oc, at(SHANGHAI, 2026, 11, 5, 20, 0)) == "a:rotation"


def test_override_covers_when_nothing_else_does() -> None:
    oc = oncall(
        overrides=[{"person": "a", "start": "2026-12-24", "end": "2026-12-26"}], fallback=None
    )
    assert who(oc, at(SHANGHAI, 2026, 12, 25, 3)) == "a:override"
    assert who(oc, at(SHANGHAI, 2026, 12, 26, 0)) == "-:nobody"


# -- fallback, nobody, active windows, gaps ---------------------------------------------------


def test_nobody_on_call_goes_to_the_fallback() -> None:
    oc = oncall()
    a = who_is_on_call(oc, SHANGHAI, at(SHANGHAI, 2026, 11, 5, 12))
    assert (a.person and a.person.name, a.source) == ("李娜", "fallback")
    assert (a.start, a.end) == (None, None)  # beyond the horizon either way


def test_without_a_fallback_nobody_is_paged() -> None:
    a = who_is_on_call(oncall(fallback=None), SHANGHAI, at(SHANGHAI, 2026, 11, 5, 12))
    assert (a.person, a.source) == (None, "nobody")


def test_active_window_limits_the_rotation_to_working_hours() -> None:
    rot = weekly(active={"days": ["mon", "tue", "wed", "thu", "fri"], "hours": "08:00-20:00"})
    oc = oncall(rot)

    assert who(oc, at(SHANGHAI, 2026, 11, 4, 7, 59)) == "boss:fallback"
    assert who(oc, at(SHANGHAI, 2026, 11, 4, 8, 0)) == "a:rotation"
    assert who(oc, at(SHANGHAI, 2026, 11, 4, 20, 0)) == "boss:fallback"
    assert who(oc, at(SHANGHAI, 2026, 11, 7, 12, 0)) == "boss:fallback"  # Saturday
    a = who_is_on_call(oc, SHANGHAI, at(SHANGHAI, 2026, 11, 4, 12))
    assert (a.start, a.end) == (at(SHANGHAI, 2026, 11, 4, 8), at(SHANGHAI, 2026, 11, 4, 20))


def test_overnight_window_belongs_to_the_day_it_starts() -> None:
    oc = oncall(daily(active={"days": ["fri"], "hours": "20:00-08:00"}))
    assert who(oc, at(SHANGHAI, 2026, 11, 6, 19, 59)) == "boss:fallback"  # Friday
    assert who(oc, at(SHANGHAI, 2026, 11, 7, 3, 0)) == "b:rotation"  # Saturday night part
    assert who(oc, at(SHANGHAI, 2026, 11, 7, 8, 0)) == "boss:fallback"
    assert who(oc, at(SHANGHAI, 2026, 11, 7, 21, 0)) == "boss:fallback"  # Saturday: not listed


def test_coverage_gaps_are_listed_with_the_fallback_that_takes_them() -> None:
    rot = weekly(active={"days": ["mon", "tue", "wed", "thu", "fri"]})
    oc = oncall(rot)
    start, end = at(SHANGHAI, 2026, 11, 2, 9), at(SHANGHAI, 2026, 11, 16, 9)

    gaps = coverage_gaps(oc, SHANGHAI, start, end, "eng")

    assert [(g.start, g.end) for g in gaps] == [
        (at(SHANGHAI, 2026, 11, 7), at(SHANGHAI, 2026, 11, 9)),
        (at(SHANGHAI, 2026, 11, 14), at(SHANGHAI, 2026, 11, 16)),
    ]
    assert all(g.covered_by_fallback and g.rotation == "eng" for g in gaps)
    assert gaps[0].duration == timedelta(days=2)
    bare = coverage_gaps(oncall(rot, fallback=None), SHANGHAI, start, end, "eng")
    assert [g.fallback for g in bare] == [None, None]


def test_an_override_closes_a_gap() -> None:
    rot = weekly(active={"days": ["mon", "tue", "wed", "thu", "fri"]})
    ov = {"person": "c", "start": "2026-11-07 00:00", "end": "2026-11-09 00:00", "rotation": "eng"}
    oc = oncall(rot, overrides=[ov])
    start, end = at(SHANGHAI, 2026, 11, 2, 9), at(SHANGHAI, 2026, 11, 16, 9)
    gaps = coverage_gaps(oc, SHANGHAI, start, end, "eng")
    assert [g.start for g in gaps] == [at(SHANGHAI, 2026, 11, 14)]


def test_schedule_covers_every_instant_once() -> None:
    rot = daily(active={"days": ["mon", "wed", "fri"], "hours": "09:00-17:00"})
    ov = {"person": "boss", "start": "2026-11-04 10:00", "end": "2026-11-04 11:00"}
    oc = oncall(rot, overrides=[ov], fallback=None)
    start, end = at(SHANGHAI, 2026, 11, 2), at(SHANGHAI, 2026, 11, 9)

    s = shifts(oc, SHANGHAI, start, end, "tech")

    assert s[0].start == start and s[-1].end == end
    assert all(x.end == y.start for x, y in pairwise(s))
    assert sum((x.duration for x in s), timedelta()) == end - start
    assert {x.source for x in s} == {"rotation", "override", "nobody"}


def test_naive_times_are_refused() -> None:
    with pytest.raises(ValueError, match="no time zone"):
        who_is_on_call(oncall(), SHANGHAI, datetime(2026, 11, 5, 12))
