"""The monthly report's view model: what a manager reads, in one language, ready to render.

Section reports (energy, savings, ...) have their own models; an adapter per section turns one
into a :class:`SectionView` of labelled figures, tables and chart data, so the templates, the CSV
and the JSON only ever see this one shape. Values are raw numbers in the unit named beside them
(percentages as 0..100 with unit ``%``); labels and ``text`` are already in the report language.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal

from pydantic import BaseModel, Field

SectionKey = Literal["energy", "savings", "uptime", "water", "maintenance"]
Status = Literal["ok", "warn", "bad"]
ChartKind = Literal["bar", "stacked", "line"]
CellValue = str | float | int | None


class Figure(BaseModel):
    key: str = Field(description="Stable machine key, e.g. 'energy.total'")
    label: str = Field(description="What the figure is, in the report language")
    value: float | None = Field(description="The number in 'unit'; null when not known")
    unit: str = Field(description="Unit of 'value' (kWh, CNY, %, h, m³, ...); '' for counts")
    text: str = Field(description="The value as printed, with its unit; '—' when not known")
    detail: str | None = Field(default=None, description="Context: comparison, bounds, target")
    status: Status | None = Field(default=None, description="ok | warn | bad against a target")


class Column(BaseModel):
    key: str = Field(description="Stable machine key of the column")
    label: str = Field(description="Heading in the report language")
    unit: str | None = Field(default=None, description="Unit of the column's numbers")
    digits: int = Field(default=1, description="Decimals printed for numbers")


class Table(BaseModel):
    key: str = Field(description="Stable machine key, e.g. 'energy.meters'")
    title: str = Field(description="Caption in the report language")
    columns: list[Column]
    rows: list[list[CellValue]] = Field(description="Raw cell values in column order")
    row_keys: list[str] | None = Field(
        default=None,
        description="Stable key of each row (the device id in per-meter tables); null when the "
        "rows have none",
    )


class Series(BaseModel):
    key: str = Field(description="Stable key; charts colour bands and series by it")
    name: str = Field(description="Legend text")
    values: list[float | None] = Field(description="One value per category; null = no data")


class Chart(BaseModel):
    key: str = Field(description="Stable machine key, e.g. 'energy.daily'")
    kind: ChartKind = Field(description="bar | stacked (bars) | line")
    title: str
    x_label: str = Field(description="Axis label of the categories")
    y_label: str = Field(description="Axis label of the values, with the unit")
    unit: str = Field(description="Unit of the values")
    categories: list[str] = Field(description="x positions, e.g. days '03-01'")
    series: list[Series]
    target: float | None = Field(default=None, description="A target drawn as a line")
    target_label: str | None = None
    better: Literal["higher", "lower"] | None = Field(
        default=None, description="Which side of the target is good; bars on the other are marked"
    )
    y_min: float | None = Field(default=None, description="Lower end of the value axis")
    y_max: float | None = Field(default=None, description="Upper end of the value axis")
    alt: str = Field(description="Text alternative: what the chart shows, in words")


class FitQuality(BaseModel):
    """How far a savings figure can be trusted: printed beside every savings number."""

    n: int | None = Field(description="Points (days) the baseline model was fitted on")
    r2: float | None = Field(description="Coefficient of determination of the fit")
    cv_rmse: float | None = Field(description="CV(RMSE) of the fit in %")
    nmbe: float | None = Field(description="NMBE of the fit in %")
    cv_rmse_limit: float | None = Field(description="CV(RMSE) limit that applies, in %")
    nmbe_limit: float | None = Field(description="|NMBE| limit that applies, in %")
    limit_name: str = Field(description="Which limit applies, e.g. ASHRAE Guideline 14 monthly")
    verdict: str = Field(description="pass | warn | fail | ... as the savings report says")
    verdict_text: str = Field(description="The verdict in the report language")
    uncertainty: float | None = Field(description="± uncertainty of the savings")
    uncertainty_unit: str = Field(default="kWh")
    confidence: float | None = Field(default=None, description="Confidence level in %")
    model: str | None = Field(default=None, description="Model form, e.g. 'HDD+CDD'")


class SectionView(BaseModel):
    key: SectionKey
    title: str
    available: bool = Field(description="False when the section could not be built")
    reason: str | None = Field(default=None, description="Why the section is not available")
    figures: list[Figure] = Field(default_factory=list)
    fit: FitQuality | None = Field(default=None, description="Savings only: fit and verdict")
    charts: list[Chart] = Field(default_factory=list)
    tables: list[Table] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list, description="Remarks in the report language")


class MeterCompleteness(BaseModel):
    device: str
    name: str
    kind: str = Field(description="power_meter | water_meter | elevator")
    metric: str = Field(description="The metric counted")
    hours: int = Field(description="Hours of the period up to the report time")
    hours_with_data: int = Field(description="Hours with at least one trusted sample")
    completeness: float | None = Field(description="hours_with_data / hours in %")


class Page(BaseModel):
    building: str | None = Field(description="Building id; null for the portfolio summary")
    title: str
    floor_area_m2: float | None = None
    sections: list[SectionView]
    completeness: list[MeterCompleteness] = Field(description="Data completeness per meter")
    overview: Table | None = Field(default=None, description="Summary only: one row per building")


class MonthlyReport(BaseModel):
    site_id: str
    site_name: str
    month: str = Field(description="YYYY-MM")
    lang: Literal["zh-CN", "en"]
    title: str
    timezone: str
    currency: str
    first_day: date
    last_day: date
    generated_at: datetime = Field(description="When the report was built (site time)")
    data_until: datetime = Field(description="End of the data used: month end or report time")
    summary: Page = Field(description="Portfolio summary page (all buildings)")
    buildings: list[Page] = Field(description="One page per building")
