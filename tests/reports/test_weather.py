"""Daily mean outdoor temperature: from a sensor in a real store, from a CSV file, by local day."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from alerts.tickets import TicketStore
from config.reporting import TemperatureSource
from reports.context import ReportContext
from reports.period import Period
from reports.weather import (
    WeatherError,
    csv_daily_means,
    daily_temperature,
    daily_windows,
    read_temperature_csv,
)
from store.base import Store
from store.reading import Quality, Reading
from tests.api.conftest import site_config

SH = ZoneInfo("Asia/Shanghai")
BERLIN = ZoneInfo("Europe/Berlin")
StoreFactory = Callable[[], Store]


def at(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2024, 3, day, hour, minute, tzinfo=SH)


@pytest.fixture
def tickets(tmp_path: Path) -> Iterator[TicketStore]:
    t = TicketStore(f"sqlite:///{tmp_path / 'tickets.db'}")
    yield t
    t.close()


def test_sensor_daily_means_by_local_day_on_both_backends(
    store_factory: StoreFactory, tickets: TicketStore
) -> None:
    store = store_factory()
    store.write(
        [
            Reading(at(1, 0), "t-out", "outdoor_temperature", 4.0, "°C"),  # 29 Feb 16:00 UTC
            Reading(at(1, 12), "t-out", "outdoor_temperature", 10.0, "°C"),
            Reading(at(1, 23, 59), "t-out", "outdoor_temperature", 7.0, "°C"),
            Reading(at(2, 6), "t-out", "outdoor_temperature", 3.0, "°C"),
            Reading(at(2, 14), "t-out", "outdoor_temperature", 99.0, "°C", Quality.BAD),
            Reading(at(2, 15), "t-out", "outdoor_temperature", 9.0, "°C"),
            Reading(at(2, 12), "other", "outdoor_temperature", 30.0, "°C"),
            # 3 March has no sample; 4 March is outside the period.
            Reading(at(4, 12), "t-out", "outdoor_temperature", 12.0, "°C"),
        ]
    )
    rc = ReportContext(site_config(), store, tickets, lambda: datetime(2024, 4, 1, tzinfo=UTC))
    period = Period(date(2024, 3, 1), date(2024, 3, 3), SH)
    got = daily_temperature(rc, period, TemperatureSource(device="t-out"))
    assert got == {date(2024, 3, 1): pytest.approx(7.0), date(2024, 3, 2): pytest.approx(6.0)}


def test_csv_daily_means_local_days_offsets_and_gaps(tmp_path: Path) -> None:
    path = tmp_path / "weather.csv"
    path.write_text(
        "\ufefftime,temperature,station\n"  # a BOM, as Excel writes it, and an extra column
        "2024-03-01T00:00,4.0,58362\n"
        "2024-03-01 12:00,10.0,58362\n"
        "2024-03-01T15:30:00Z,7.0,58362\n"  # 23:30 in Shanghai: still 1 March
        "2024-03-01T16:00:00+00:00,1.0,58362\n"  # 00:00 on 2 March
        "2024-03-02T12:00,,58362\n"  # a gap in the record
        "\n"
        "2024-03-02T13:00,5.0,58362\n"
        "2024-03-05,20.0,58362\n",  # a daily value dated without a time; outside the period
        encoding="utf-8",
    )
    period = Period(date(2024, 3, 1), date(2024, 3, 3), SH)
    got = csv_daily_means(path, period)
    assert got == {date(2024, 3, 1): pytest.approx(7.0), date(2024, 3, 2): pytest.approx(3.0)}
    rows = read_temperature_csv(path, SH)
    assert len(rows) == 6
    assert rows[0][0] == at(1, 0)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("time,temperature\n2024-03-01T00:00,4\n2024-03-01T01:00,warm\n",
         r"weather\.csv:3: temperature 'warm' is not a number"),
        ("time,temperature\n2024-13-01T00:00,4\n",
         r"weather\.csv:2: time '2024-13-01T00:00' is not ISO 8601"),
        ("time,temperature\n2024-03-01T00:00,4\n2024-03-01T01:00\n",
         r"weather\.csv:3: expected 2 columns, got 1"),
        ("time,temperature\n2024-03-01T00:00,77.0\n",
         r"weather\.csv:2: temperature 77\.0 is not a plausible .* °F"),
        ("date,temp\n2024-03-01T00:00,4\n",
         r"weather\.csv:1: expected columns 'time' and 'temperature' .* found 'date,temp'"),
        ("", r"weather\.csv:1: empty file"),
    ],
)  # fmt: skip
def test_bad_csv_rows_name_the_file_and_line(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "weather.csv"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(WeatherError, match=message):
        csv_daily_means(path, Period(date(2024, 3, 1), date(2024, 3, 3), SH))


def test_csv_source_through_the_config_and_a_missing_file(
    tmp_path: Path, embedded_store_factory: Callable[[], Store], tickets: TicketStore
) -> None:
    path = tmp_path / "w.csv"
    path.write_text("time,temperature\n2024-03-01T08:00,6.5\n", encoding="utf-8")
    cfg = site_config(reports={"savings": {"temperature": {"csv": str(path)}}})
    rc = ReportContext(cfg, embedded_store_factory(), tickets)
    period = Period(date(2024, 3, 1), date(2024, 3, 1), SH)
    assert daily_temperature(rc, period) == {date(2024, 3, 1): 6.5}
    gone = TemperatureSource(csv=tmp_path / "gone.csv")
    with pytest.raises(WeatherError, match=r"gone\.csv: cannot read the temperature file"):
        daily_temperature(rc, period, gone)
    with pytest.raises(WeatherError, match="no outdoor temperature source"):
        daily_temperature(ReportContext(site_config(), rc.store, tickets), period)


def test_daily_windows_start_at_local_midnight_across_dst() -> None:
    # Berlin leaves winter time on 31 March 2024: that day has 23 hours.
    runs = daily_windows(Period(date(2024, 3, 29), date(2024, 4, 2), BERLIN))
    assert [(w.every, len(w.bounds())) for w in runs] == [
        (timedelta(days=1), 2),
        (timedelta(hours=23), 1),
        (timedelta(days=1), 2),
    ]
    starts = [s.astimezone(BERLIN) for w in runs for s, _ in w.bounds()]
    assert all(s.hour == 0 and s.minute == 0 for s in starts)
    assert [s.day for s in starts] == [29, 30, 31, 1, 2]
    (one,) = daily_windows(Period(date(2024, 3, 1), date(2024, 3, 31), SH))
    assert len(one.bounds()) == 31
