"""Daily mean outdoor temperature per local day: the weather a savings baseline is normalised to.

Two sources (``reports.savings.temperature`` in the site config):

* a sensor in the store: the mean of its ``metric`` over each local day (``Store.aggregate``);
  a day without a sample has no temperature;
* a CSV file with columns ``time`` and ``temperature`` (°C), e.g. exported from a weather
  service: ``time`` is ISO 8601, site-local when it has no offset; a row dated without a time
  is that day's value. Rows are averaged per local day. A blank temperature is a gap; anything
  else that is not a plausible number stops the report with the file and line to fix.
"""

from __future__ import annotations

import csv
import math
from collections import defaultdict
from datetime import UTC, date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from config.reporting import TemperatureSource
from reports.context import ReportContext
from reports.period import Period
from store.base import Store, Windows

__all__ = [
    "WeatherError",
    "csv_daily_means",
    "daily_temperature",
    "daily_windows",
    "describe_source",
    "read_temperature_csv",
    "sensor_daily_means",
]

# Outdoor air on Earth: anything outside is a unit mix-up (°F, tenths of a degree) or garbage.
PLAUSIBLE_C = (-90.0, 60.0)


class WeatherError(ValueError):
    """The temperature source cannot be used; the message names the file and line to fix."""


def daily_windows(period: Period) -> list[Windows]:
    """The period's local days as runs of equal-length windows.

    ``Windows`` steps by a fixed duration, but a local day that crosses a daylight-saving change
    is 23 or 25 hours long: such a day gets a run of its own, so every window starts at local
    midnight. Without a change in the period (Asia/Shanghai, always) it is one run.
    """
    runs: list[Windows] = []
    # UTC: subtracting or adding to aware datetimes that share a zone ignores offset changes.
    bounds = [(s.astimezone(UTC), e.astimezone(UTC)) for _, s, e in period.day_bounds()]
    run_start, run_end = bounds[0]
    length = run_end - run_start
    for start, end in bounds[1:]:
        if end - start == length:
            run_end = end
            continue
        runs.append(Windows(run_start, run_end, length))
        run_start, run_end, length = start, end, end - start
    runs.append(Windows(run_start, run_end, length))
    return runs


def sensor_daily_means(store: Store, device: str, metric: str, period: Period) -> dict[date, float]:
    """Mean of ``metric`` of ``device`` over each local day of ``period`` that has samples."""
    out: dict[date, float] = {}
    for windows in daily_windows(period):
        for wv in store.aggregate(metric, windows, "mean", [device]):
            if math.isfinite(wv.value):
                out[wv.start.astimezone(period.tz).date()] = wv.value
    return out


def read_temperature_csv(path: Path, tz: ZoneInfo) -> list[tuple[datetime, float]]:
    """(aware time, °C) rows of a temperature CSV, in file order; gaps (blank values) skipped."""
    try:
        handle = path.open(encoding="utf-8-sig", newline="")
    except OSError as e:
        raise WeatherError(f"{path}: cannot read the temperature file: {e.strerror}") from None
    out: list[tuple[datetime, float]] = []
    with handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None:
            raise WeatherError(f"{path}:1: empty file; expected a header 'time,temperature'")
        names = [h.strip().lower() for h in header]
        if "time" not in names or "temperature" not in names:
            found = ",".join(h.strip() for h in header)
            raise WeatherError(
                f"{path}:1: expected columns 'time' and 'temperature' (°C), found {found!r}"
            )
        i_time, i_temp = names.index("time"), names.index("temperature")
        for row in reader:
            line = reader.line_num
            if not row or all(not cell.strip() for cell in row):
                continue
            if len(row) <= max(i_time, i_temp):
                raise WeatherError(f"{path}:{line}: expected {len(names)} columns, got {len(row)}")
            out_row = _parse_row(path, line, row[i_time], row[i_temp], tz)
            if out_row is not None:
                out.append(out_row)
    return out


def _parse_row(
    path: Path, line: int, time_text: str, temp_text: str, tz: ZoneInfo
) -> tuple[datetime, float] | None:
    try:
        t = datetime.fromisoformat(time_text.strip())
    except ValueError:
        raise WeatherError(
            f"{path}:{line}: time {time_text.strip()!r} is not ISO 8601 "
            "(2024-03-01, 2024-03-01T08:00 or 2024-03-01T08:00+08:00)"
        ) from None
    t = t.replace(tzinfo=tz) if t.tzinfo is None else t
    text = temp_text.strip()
    if not text:
        return None  # a gap in the record, not an error
    try:
        value = float(text)
    except ValueError:
        raise WeatherError(f"{path}:{line}: temperature {text!r} is not a number") from None
    lo, hi = PLAUSIBLE_C
    if not (math.isfinite(value) and lo <= value <= hi):
        raise WeatherError(
            f"{path}:{line}: temperature {text} is not a plausible outdoor temperature in °C "
            f"({lo:g}..{hi:g}); is the column in °F or tenths of a degree?"
        )
    return t, value


def csv_daily_means(path: Path, period: Period) -> dict[date, float]:
    """Mean of the CSV's rows per local day of ``period``."""
    sums: dict[date, list[float]] = defaultdict(list)
    start, end = period.start, period.end
    for t, value in read_temperature_csv(path, period.tz):
        if start <= t < end:
            sums[t.astimezone(period.tz).date()].append(value)
    return {d: sum(v) / len(v) for d, v in sorted(sums.items())}


def describe_source(source: TemperatureSource) -> str:
    if source.device is not None:
        return f"sensor {source.device} ({source.metric}), daily mean"
    return f"file {source.csv}, daily mean"


def daily_temperature(
    rc: ReportContext, period: Period, source: TemperatureSource | None = None
) -> dict[date, float]:
    """Daily mean outdoor temperature (°C) per local day of ``period`` that has data.

    ``source`` defaults to ``reports.savings.temperature``. A relative CSV path is taken from
    the current directory (the config loader does not resolve it against the config file).
    """
    src = source if source is not None else rc.config.reports.savings.temperature
    if src is None:
        raise WeatherError(
            "no outdoor temperature source: set reports.savings.temperature "
            "(a sensor device or a CSV file)"
        )
    if src.device is not None:
        return sensor_daily_means(rc.store, src.device, src.metric, period)
    assert src.csv is not None  # TemperatureSource validates exactly one of the two
    return csv_daily_means(src.csv.expanduser().absolute(), period)
