"""Config for reports: tariffs, budgets, and the settings of each report.

Kept beside ``config.models`` (which imports it) because tariffs and report settings are a
separate vocabulary — bands, balance points, night windows — that only ``reports/`` reads.
Definitions follow ../shared/domain.md.
"""

from __future__ import annotations

import re
from datetime import date, time, timedelta
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)

from config.durations import Duration

Band = Literal["sharp", "peak", "flat", "valley"]
BANDS: tuple[Band, ...] = ("sharp", "peak", "flat", "valley")

_SPAN = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")
_MONTH = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def parse_span(v: object) -> object:
    """``"10:00-12:00"`` -> (time, time). ``24:00`` ends a span at midnight; spans may not wrap."""
    if not isinstance(v, str):
        return v
    m = _SPAN.match(v)
    if not m:
        raise ValueError(f"expected a local time span such as '10:00-12:00', got {v!r}")
    h0, m0, h1, m1 = (int(g) for g in m.groups())
    if h0 > 23 or m0 > 59 or m1 > 59 or h1 > 24 or (h1 == 24 and m1 != 0):
        raise ValueError(f"{v!r} is not a valid time span (00:00..24:00)")
    start = h0 * 60 + m0
    end = h1 * 60 + m1
    if end <= start:
        raise ValueError(f"{v!r} ends before it starts; split a span across midnight in two")
    return (start, end)


# A span of local clock time as minutes since midnight, [start, end).
Span = Annotated[tuple[int, int], BeforeValidator(parse_span)]


def span_text(span: tuple[int, int]) -> str:
    s, e = span
    return f"{s // 60:02d}:{s % 60:02d}-{e // 60:02d}:{e % 60:02d}"


def parse_clock(v: object) -> object:
    if isinstance(v, str):
        try:
            return time.fromisoformat(v.strip())
        except ValueError:
            raise ValueError(f"expected a local time such as '02:00', got {v!r}") from None
    return v


ClockTime = Annotated[time, BeforeValidator(parse_clock)]


# -- tariffs ----------------------------------------------------------------------------------
class TouPeriod(_Model):
    band: Band = Field(description="sharp | peak | flat | valley")
    hours: list[Span] = Field(
        min_length=1, description="Local time spans, e.g. ['10:00-12:00', '14:00-19:00']"
    )
    months: list[int] = Field(
        default_factory=lambda: list(range(1, 13)),
        description="Months (1-12) the period applies in; default all year",
    )

    @field_validator("months")
    @classmethod
    def _months(cls, v: list[int]) -> list[int]:
        bad = [m for m in v if not 1 <= m <= 12]
        if bad:
            raise ValueError(f"months must be 1..12, got {bad}")
        return sorted(set(v))


class TariffVersion(_Model):
    effective_from: date = Field(description="First local day this version prices")
    prices: dict[Band, float] = Field(
        description="Price per kWh of each band used by 'periods'; 'flat' prices the rest"
    )
    periods: list[TouPeriod] = Field(
        default_factory=list,
        description="Time-of-use periods; a later entry wins where two overlap (list 'sharp' "
        "after 'peak'); time no period covers is 'flat'",
    )
    fixed_per_month: float = Field(default=0.0, ge=0, description="Fixed charge per month")
    demand_per_kw_month: float = Field(
        default=0.0,
        ge=0,
        description="Demand (capacity) charge per kW of the month's highest 15-minute mean",
    )

    @model_validator(mode="after")
    def _priced(self) -> TariffVersion:
        if "flat" not in self.prices:
            raise ValueError("prices needs 'flat' (it prices time no period covers)")
        missing = sorted({p.band for p in self.periods} - set(self.prices))
        if missing:
            raise ValueError(f"periods use band(s) {', '.join(missing)} with no price")
        if any(v < 0 for v in self.prices.values()):
            raise ValueError("prices must not be negative")
        return self


class Tariff(_Model):
    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$", description="Tariff id")
    name: str = Field(description="Display name, e.g. '广东 一般工商业 两部制 10kV'")
    buildings: list[str] = Field(
        default_factory=list, description="Buildings priced by this tariff; empty = all others"
    )
    versions: list[TariffVersion] = Field(
        min_length=1, description="Versions by effective date; each prices from its date on"
    )

    @model_validator(mode="after")
    def _ordered(self) -> Tariff:
        days = [v.effective_from for v in self.versions]
        if len(set(days)) != len(days):
            raise ValueError("two versions have the same effective_from")
        if days != sorted(days):
            raise ValueError("list versions oldest first")
        return self


# -- report settings --------------------------------------------------------------------------
class Budget(_Model):
    building: str = Field(description="Building id")
    month: str = Field(description="Month as YYYY-MM")
    kwh: float | None = Field(default=None, ge=0, description="Budgeted energy")
    cost: float | None = Field(default=None, ge=0, description="Budgeted energy cost")

    @field_validator("month")
    @classmethod
    def _month(cls, v: str) -> str:
        if not _MONTH.match(v):
            raise ValueError(f"expected YYYY-MM, got {v!r}")
        return v


class EnergySettings(_Model):
    metric: str = Field(default="energy_import", description="Import energy counter metric")
    power_metric: str = Field(default="active_power", description="Active power metric (kW)")
    base_load_hours: list[Span] = Field(
        default_factory=lambda: [(0, 6 * 60)],
        description="Local night hours whose mean kW is the base load (weekends count whole)",
    )
    budgets: list[Budget] = Field(default_factory=list, description="Monthly budgets")


class NonRoutineEvent(_Model):
    start: date = Field(description="First local day affected")
    end: date | None = Field(default=None, description="Last local day affected; open if omitted")
    building: str | None = Field(default=None, description="Building; all when omitted")
    description: str = Field(description="What happened, e.g. 'B1 car park closed for works'")


class TemperatureSource(_Model):
    device: str | None = Field(default=None, description="Device with an outdoor sensor")
    metric: str = Field(default="outdoor_temperature", description="Metric of that device (°C)")
    csv: Path | None = Field(
        default=None,
        description="CSV of outdoor temperature: columns time (ISO 8601, site-local if no "
        "offset) and temperature (°C); relative to the config file",
    )

    @model_validator(mode="after")
    def _one(self) -> TemperatureSource:
        if (self.device is None) == (self.csv is None):
            raise ValueError("give exactly one of 'device' or 'csv'")
        return self


class SavingsSettings(_Model):
    temperature: TemperatureSource | None = Field(
        default=None, description="Where the daily mean outdoor temperature comes from"
    )
    baseline_start: date | None = Field(
        default=None, description="First day of the baseline; default 365 days before reporting"
    )
    baseline_end: date | None = Field(
        default=None, description="Day after the baseline; default the reporting start"
    )
    reporting_start: date | None = Field(
        default=None, description="First day of the reporting period (after the measure)"
    )
    split_weekday_weekend: bool = Field(
        default=False, description="Fit weekdays and weekends as separate models"
    )
    events: list[NonRoutineEvent] = Field(
        default_factory=list, description="Non-routine events, listed in the savings report"
    )


class WaterSettings(_Model):
    metric: str = Field(default="volume", description="Volume counter metric (m3)")
    flow_metric: str = Field(default="flow_rate", description="Flow rate metric (m3/h)")
    price_per_m3: float = Field(default=0.0, ge=0, description="Water price per m3")
    night: Span = Field(
        default=(2 * 60, 4 * 60), description="Local window for the minimum night flow"
    )
    rolling: Duration = Field(
        default=timedelta(minutes=60), description="Averaging window of the night flow"
    )
    threshold_m3h: float = Field(
        default=0.05, ge=0, description="Absolute minimum night flow above which a night counts"
    )
    ratio: float = Field(
        default=0.1, ge=0, description="... or this fraction of the average daily flow, if higher"
    )
    leak_nights: int = Field(
        default=3, ge=1, description="Consecutive high nights that open a leak"
    )
    no_zero_window: Span = Field(
        default=(0, 6 * 60), description="Local window in which flow must touch zero"
    )
    no_zero_nights: int = Field(
        default=2, ge=1, description="Nights without zero flow that open a leak"
    )
    clear_nights: int = Field(default=2, ge=1, description="Clean nights that close a leak")
    allowance_m3h: float = Field(
        default=0.0, ge=0, description="Legitimate night use subtracted when estimating loss"
    )
    gap_polls: float = Field(
        default=3.0, gt=0, description="A flow sample covers at most this many poll intervals"
    )


class UptimeSettings(_Model):
    gap_polls: float = Field(
        default=3.0, gt=0, description="A sample covers at most this many poll intervals"
    )
    target: float = Field(default=0.98, gt=0, le=1, description="Intact/availability target")
    min_coverage: float = Field(
        default=0.9, gt=0, le=1, description="Below this coverage: 'insufficient data'"
    )
    rescue_limit: Duration = Field(
        default=timedelta(minutes=30), description="Entrapment rescue arrival limit (TSG T5002)"
    )
    fault_classes: dict[int, str] = Field(
        default_factory=dict,
        description="Fault code -> class name for downtime by class, e.g. {21: door_lock}; "
        "unlisted codes are reported as fault_<code>",
    )
    on_site_events: list[str] = Field(
        default_factory=lambda: ["arrived", "started"],
        description="Ticket event kinds that put a technician on site (entrapment rescue time)",
    )


class MaintenanceSettings(_Model):
    on_time_target: float = Field(
        default=0.92, gt=0, le=1, description="Repairs on time target (零修/急修 及时率)"
    )


class MonthlySettings(_Model):
    email_to: list[str] = Field(
        default_factory=list, description="Recipients of the monthly report e-mail"
    )
    schedule: bool = Field(
        default=False, description="Build and e-mail last month's report on the 1st at 08:00"
    )
    smtp_host: str = Field(default="localhost", description="SMTP server the e-mail goes to")
    smtp_port: int = Field(default=25, ge=1, le=65535, description="SMTP port (587: STARTTLS)")
    smtp_starttls: bool = Field(default=False, description="Upgrade the connection (STARTTLS)")
    smtp_user: str | None = Field(default=None, description="SMTP login; none: no login")
    smtp_password: SecretStr | None = Field(
        default=None, description="SMTP password; write it as ${ENV_VAR}"
    )
    mail_from: str = Field(default="facmon@localhost", description="Sender of the e-mail")

    @model_validator(mode="after")
    def _recipients(self) -> MonthlySettings:
        if self.schedule and not self.email_to:
            raise ValueError("schedule: true needs at least one address in email_to")
        return self


class Reports(_Model):
    energy: EnergySettings = Field(default_factory=EnergySettings, description="Energy report")
    savings: SavingsSettings = Field(default_factory=SavingsSettings, description="Savings")
    water: WaterSettings = Field(default_factory=WaterSettings, description="Water and leaks")
    uptime: UptimeSettings = Field(default_factory=UptimeSettings, description="Availability")
    maintenance: MaintenanceSettings = Field(
        default_factory=MaintenanceSettings, description="Repair KPIs"
    )
    monthly: MonthlySettings = Field(
        default_factory=MonthlySettings, description="Monthly management report"
    )
