"""On-call rotations and overrides (E6 of ../shared/alerting-semantics.md).

Kept beside ``config.models`` (which imports it into ``OnCall``) so that the models file stays
about the site itself. Every time here is local wall-clock time in the site's time zone;
``alerts.oncall`` turns them into instants.

Checks that need the rest of ``oncall`` (people named by rotations and overrides, overrides
that overlap) run on the raw YAML data in :func:`oncall_problems`, so the loader can point at
the file line of the very field.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import UTC, date, datetime, time
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from config.common import Loc, declared, parse_hours, section, unknown

Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_WEEKDAY_NAMES = {
    "monday": "mon",
    "tuesday": "tue",
    "wednesday": "wed",
    "thursday": "thu",
    "friday": "fri",
    "saturday": "sat",
    "sunday": "sun",
}
# Same pattern as config.models.Ident, which cannot be imported here (models imports this).
_IDENT = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def _weekday(v: Any) -> Any:
    if isinstance(v, str):
        v = v.strip().lower()
        return _WEEKDAY_NAMES.get(v, v)
    return v


def _clock(v: Any) -> Any:
    """``"09:00"``; also YAML 1.1's reading of an unquoted ``10:30`` as the number 630."""
    if isinstance(v, int) and not isinstance(v, bool):
        if not 0 <= v < 24 * 60:
            raise ValueError(f"expected a local time such as '09:00', got {v!r}")
        return time(v // 60, v % 60)
    if isinstance(v, str):
        try:
            return time.fromisoformat(v.strip())
        except ValueError:
            raise ValueError(f"expected a local time such as '09:00', got {v!r}") from None
    return v


def _hours(v: Any) -> Any:
    """``"08:00-20:00"`` -> minutes (480, 1200); an end before the start wraps past midnight."""
    if not isinstance(v, str):
        return v
    return parse_hours(v, empty_hint="; leave 'hours' out to cover the whole day")


def _local_datetime(v: Any) -> Any:
    # YAML reads a bare 2026-12-24 as a date: the override starts or ends at its midnight.
    if isinstance(v, date) and not isinstance(v, datetime):
        return datetime.combine(v, time())
    return v


ClockTime = Annotated[time, BeforeValidator(_clock)]
LocalDateTime = Annotated[datetime, BeforeValidator(_local_datetime)]
# Local clock minutes [start, end); end <= start wraps past midnight; end may be 1440 (24:00).
ClockHours = Annotated[tuple[int, int], BeforeValidator(_hours)]


class ActiveWindow(_Model):
    """When a rotation covers at all; outside it nobody from the rotation is on call."""

    days: list[Annotated[Weekday, BeforeValidator(_weekday)]] = Field(
        default_factory=lambda: list(WEEKDAYS),
        min_length=1,
        description="Days the rotation covers (mon..sun); an overnight window belongs to the "
        "day it starts on; default every day",
    )
    hours: ClockHours | None = Field(
        default=None,
        description="Local hours covered each of those days, e.g. '08:00-20:00', or "
        "'20:00-08:00' for nights; default the whole day",
    )

    @field_validator("days")
    @classmethod
    def _ordered_days(cls, v: list[Weekday]) -> list[Weekday]:
        return [d for d in WEEKDAYS if d in v]

    def spans(self) -> tuple[int, int]:
        """Local (start, end) minutes of one covered day; end may pass 1440 (next day)."""
        if self.hours is None:
            return 0, 24 * 60
        start, end = self.hours
        return start, end if end > start else end + 24 * 60


class Rotation(_Model):
    id: str = Field(
        pattern=_IDENT, description="Rotation id, referenced by escalation steps and overrides"
    )
    name: str = Field(description="Display name, e.g. '工程部 值班 / Engineering on-call'")
    members: list[Annotated[str, Field(pattern=_IDENT)]] = Field(
        min_length=1,
        description="Person ids (from oncall.people) in the order they take the shift",
    )
    handoff: Literal["daily", "weekly"] = Field(
        default="weekly", description="How often the shift passes to the next member"
    )
    handoff_time: ClockTime = Field(
        default=time(9, 0),
        description="Local time of the handoff, e.g. '09:00' (quote it: YAML reads 10:00 "
        "as a number, which facmon also accepts)",
    )
    handoff_weekday: Annotated[Weekday, BeforeValidator(_weekday)] = Field(
        default="mon", description="Weekly rotations: the day of the handoff (mon..sun)"
    )
    start: date = Field(
        description="Local date the first member's shift begins (at handoff_time); a weekly "
        "rotation whose start is not on handoff_weekday has a shorter first shift"
    )
    active: ActiveWindow | None = Field(
        default=None,
        description="Only these days/hours are covered, e.g. {days: [mon, tue, wed, thu, fri], "
        "hours: '08:00-20:00'}; default around the clock",
    )

    @field_validator("handoff_weekday")
    @classmethod
    def _weekly_only(cls, v: Weekday, info: ValidationInfo) -> Weekday:
        if info.data.get("handoff") == "daily" and v != "mon":
            raise ValueError("only weekly rotations have a handoff_weekday")
        return v


class Override(_Model):
    person: str = Field(pattern=_IDENT, description="Person id (from oncall.people) on call")
    start: LocalDateTime = Field(
        description="Local start, e.g. '2026-12-24 18:00' (site time zone unless an offset "
        "is given)"
    )
    end: LocalDateTime = Field(description="Local end (exclusive), after start")
    rotation: str | None = Field(
        default=None,
        pattern=_IDENT,
        description="Rotation id it replaces; default every rotation",
    )
    reason: str | None = Field(default=None, description="Why, e.g. 'swap with Li Na'")

    @field_validator("end")
    @classmethod
    def _after_start(cls, v: datetime, info: ValidationInfo) -> datetime:
        start = info.data.get("start")
        if not isinstance(start, datetime):
            return v  # start itself is wrong and reported on its own
        if (start.tzinfo is None) != (v.tzinfo is None):
            raise ValueError("give start and end both with a UTC offset or both without")
        if v <= start:
            raise ValueError(
                f"end ({v:%Y-%m-%d %H:%M}) must be after start ({start:%Y-%m-%d %H:%M})"
            )
        return v

    def interval(self, tz: ZoneInfo) -> tuple[datetime, datetime]:
        """[start, end) as UTC instants; a time without an offset is local to ``tz``."""
        return _instant(self.start, tz), _instant(self.end, tz)


def _instant(v: datetime, tz: ZoneInfo) -> datetime:
    return (v if v.tzinfo is not None else v.replace(tzinfo=tz)).astimezone(UTC)


# -- checks against the rest of the config (raw data) -----------------------------------------


def _site_zone(data: Mapping[str, Any]) -> ZoneInfo:
    site = data.get("site")
    name = site.get("timezone") if isinstance(site, Mapping) else None
    try:
        return ZoneInfo(name if isinstance(name, str) else "Asia/Shanghai")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")  # the site's own check reports the zone


def oncall_problems(data: Any) -> Iterator[tuple[Loc, str]]:
    """People and rotations that rotations and overrides name but nobody declared, duplicate
    rotation ids, and overrides of the same rotation that overlap."""
    oncall = section(data, "oncall")
    if oncall is None:
        return
    people = list(declared(oncall.get("people")))
    rotations = oncall.get("rotations")
    rotation_ids: list[str] = []
    for i, rot in enumerate(rotations if isinstance(rotations, list) else []):
        if not isinstance(rot, Mapping):
            continue
        rid = rot.get("id")
        if isinstance(rid, str):
            if rid in rotation_ids:
                at = rotation_ids.index(rid)
                message = f"duplicate rotation id '{rid}' (same as rotations[{at}])"
                yield ("oncall", "rotations", i, "id"), message
            rotation_ids.append(rid)
        members = rot.get("members")
        for j, m in enumerate(members if isinstance(members, list) else []):
            if isinstance(m, str) and m not in people:
                yield ("oncall", "rotations", i, "members", j), unknown("person", m, people)

    overrides = oncall.get("overrides")
    valid: list[tuple[int, Override]] = []
    for i, ov in enumerate(overrides if isinstance(overrides, list) else []):
        if not isinstance(ov, Mapping):
            continue
        person = ov.get("person")
        if isinstance(person, str) and person not in people:
            yield ("oncall", "overrides", i, "person"), unknown("person", person, people)
        rot_id = ov.get("rotation")
        if isinstance(rot_id, str) and isinstance(rotations, list) and rot_id not in rotation_ids:
            yield ("oncall", "overrides", i, "rotation"), unknown("rotation", rot_id, rotation_ids)
        try:
            valid.append((i, Override.model_validate(ov)))
        except ValidationError:
            continue  # the model validation reports it, on its own line
    yield from _overlaps(valid, _site_zone(data))


def _overlaps(overrides: list[tuple[int, Override]], tz: ZoneInfo) -> Iterator[tuple[Loc, str]]:
    # Two overrides of one rotation at once leave no rule for who is on call.
    seen: list[tuple[int, Override, datetime, datetime]] = []
    for i, ov in overrides:
        start, end = ov.interval(tz)
        for j, other, o_start, o_end in seen:
            same_scope = ov.rotation in (None, other.rotation) or other.rotation is None
            if same_scope and start < o_end and o_start < end:
                scope = f"rotation '{ov.rotation or other.rotation}'"
                if ov.rotation is None and other.rotation is None:
                    scope = "every rotation"
                message = (
                    f"overlaps overrides[{j}] ({other.person}, {other.start:%Y-%m-%d %H:%M} to "
                    f"{other.end:%Y-%m-%d %H:%M}) for {scope}; end one before the other starts"
                )
                yield ("oncall", "overrides", i, "start"), message
                break
        seen.append((i, ov, start, end))
