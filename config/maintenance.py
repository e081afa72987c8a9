"""Preventive maintenance schedules (T8 of ../shared/alerting-semantics.md): jobs that recur
per device, such as the half-monthly elevator maintenance that TSG T5002 requires (电梯维保,
every 15 days), entrapment rescue drills, infrared inspections of electrical panels or
cleaning a water tank twice a year.

Kept beside ``config.models`` (which imports it). Schedules select devices with the same
``Selector`` as alert rules; that class is defined in ``config.models``, which completes these
models once it exists (:func:`resolve_selector`).

Dates are the site's local dates: a job *due* on a day is on time when it is resolved before
that day ends; its ticket opens ``lead`` days before the due day starts. ``every`` is whole
days (``15d``) or a calendar step (``month``, ``quarter``, ``half_year``, ``year``; a due day
past the end of a shorter month falls on its last day).
"""

from __future__ import annotations

import calendar
from collections.abc import Iterator, Mapping
from datetime import date, timedelta
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from config.common import Loc, declared, section, unknown
from config.durations import Duration, parse_duration

if TYPE_CHECKING:
    from config.models import Selector

CalendarStep = Literal["month", "quarter", "half_year", "year"]
MONTHS: Mapping[str, int] = {"month": 1, "quarter": 3, "half_year": 6, "year": 12}
# The ticket's fault class is this plus the schedule id, within the 64 characters of the column.
FAULT_CLASS_PREFIX = "preventive:"
_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,47}$"
_SHORTEST_MONTH = timedelta(days=28)


def _parse_every(v: Any) -> Any:
    if isinstance(v, str) and v.strip() in MONTHS:
        return v.strip()
    return parse_duration(v)


Every = Annotated[timedelta | CalendarStep, BeforeValidator(_parse_every)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def add_months(d: date, months: int) -> date:
    """``d`` moved by whole calendar months; a day past the new month's end becomes its last."""
    y, m = divmod(d.month - 1 + months, 12)
    year, month = d.year + y, m + 1
    return date(year, month, min(d.day, calendar.monthrange(year, month)[1]))


class MaintenanceSchedule(_Model):
    id: str = Field(
        pattern=_ID_PATTERN,
        description="Schedule id (letters, digits, '_', '-', '.'; at most 48 characters); its "
        "tickets have the fault class 'preventive:<id>'",
    )
    name: str | dict[Literal["zh-CN", "en"], str] = Field(
        description="The job as tickets name it, e.g. '电梯半月维保', or one text per language: "
        "{zh-CN: 电梯半月维保, en: elevator 15-day maintenance}",
    )
    select: Selector = Field(description="Devices that get this job, as for alert rules")
    every: Every = Field(
        description="How often: whole days (e.g. 15d) or month, quarter, half_year or year"
    )
    anchor: Literal["schedule", "completion"] = Field(
        default="schedule",
        description="schedule: jobs are due on first_due and every 'every' after it, however "
        "late the previous one was done; completion: the next job is due 'every' after the "
        "day the previous one was resolved",
    )
    first_due: date = Field(description="Due day (site-local, YYYY-MM-DD) of the first job")
    lead: Duration = Field(
        default=timedelta(0),
        description="The ticket opens this many whole days before the due day (e.g. 3d); "
        "shorter than 'every'",
    )
    priority: Literal["P1", "P2", "P3"] = Field(
        default="P3", description="Priority of the tickets; the due day is their deadline"
    )
    note: str = Field(
        default="",
        description="Written on each ticket, e.g. the procedure or the regulation (TSG T5002)",
    )

    @field_validator("every")
    @classmethod
    def _whole_days(cls, v: timedelta | str) -> timedelta | str:
        if isinstance(v, timedelta) and (v < timedelta(days=1) or v % timedelta(days=1)):
            raise ValueError("must be whole days (at least 1d) or month, quarter, half_year, year")
        return v

    @field_validator("lead")
    @classmethod
    def _lead_days(cls, v: timedelta) -> timedelta:
        if v < timedelta(0) or v % timedelta(days=1):
            raise ValueError("must be whole days, e.g. 0d or 3d")
        return v

    @model_validator(mode="after")
    def _lead_shorter(self) -> MaintenanceSchedule:
        period = self.every if isinstance(self.every, timedelta) else _SHORTEST_MONTH
        if self.lead >= period:
            raise ValueError(
                f"lead ({self.lead.days}d) must be shorter than every ({self.every_text}): the "
                "next ticket would open before the previous job is due"
            )
        return self

    @property
    def fault_class(self) -> str:
        return FAULT_CLASS_PREFIX + self.id

    @property
    def every_text(self) -> str:
        return self.every if isinstance(self.every, str) else f"{self.every.days}d"

    def title(self, language: str) -> str:
        """The job's name in ``language`` (the other language when that one is missing)."""
        if isinstance(self.name, str):
            return self.name
        texts = {str(lang): text for lang, text in self.name.items()}
        return texts.get(language) or next(iter(texts.values()))

    def after(self, d: date, steps: int = 1) -> date:
        """The day ``steps`` periods after ``d``."""
        if isinstance(self.every, str):
            return add_months(d, MONTHS[self.every] * steps)
        return d + self.every * steps

    def nth_due(self, k: int) -> date:
        """Due day of the ``k``-th job of the fixed series (k = 0: ``first_due``)."""
        return self.after(self.first_due, k)


class Maintenance(_Model):
    schedules: list[MaintenanceSchedule] = Field(
        default_factory=list,
        description="Preventive maintenance: recurring jobs per device, each opening a ticket "
        "before it is due; no new one while the previous is open (T8)",
    )
    check_every: Duration = Field(
        default=timedelta(minutes=5),
        description="How often facmon looks for jobs whose ticket should open",
    )

    @field_validator("check_every")
    @classmethod
    def _sane_check(cls, v: timedelta) -> timedelta:
        if not timedelta(seconds=10) <= v <= timedelta(days=1):
            raise ValueError("must be between 10s and 1d")
        return v


def resolve_selector(selector: type[BaseModel]) -> None:
    """Complete the models once ``config.models`` has defined ``Selector``."""
    for model in (MaintenanceSchedule, Maintenance):
        model.model_rebuild(_types_namespace={"Selector": selector})


def maintenance_problems(data: Any) -> Iterator[tuple[Loc, str]]:
    """On the raw config: duplicate schedule ids, and devices or buildings a schedule selects
    that the site does not declare."""
    block = section(data, "maintenance")
    schedules = block.get("schedules") if block is not None else None
    if not isinstance(schedules, list):
        return
    known = {key: list(declared(data.get(key))) for key in ("devices", "buildings")}
    first: dict[str, int] = {}
    for i, sched in enumerate(schedules):
        if not isinstance(sched, Mapping):
            continue
        base: Loc = ("maintenance", "schedules", i)
        ident = sched.get("id")
        if isinstance(ident, str):
            if ident in first:
                yield (
                    (*base, "id"),
                    (
                        f"duplicate schedule id '{ident}' (same as maintenance.schedules"
                        f"[{first[ident]}])"
                    ),
                )
            else:
                first[ident] = i
        select = sched.get("select")
        if not isinstance(select, Mapping):
            continue
        for key, what in (("devices", "device"), ("buildings", "building")):
            names = select.get(key)
            if not isinstance(names, list) or not known[key]:
                continue
            for j, name in enumerate(names):
                if isinstance(name, str) and name not in known[key]:
                    yield (*base, "select", key, j), unknown(what, name, known[key])
