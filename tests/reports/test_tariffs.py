"""Time-of-use pricing against ../shared/domain.md, "Tariffs".

Guangdong 2021 (test vector, verbatim): peak 10-12 and 14-19, valley 0-8, flat the rest; flat
0.60 CNY/kWh, so peak 1.02, valley 0.228, sharp 1.275 in 11-12 and 15-17 in July-September.
Constant 1 kWh/h:

    March day:  valley 8 h x 0.228 + peak 7 h x 1.02 + flat 9 h x 0.60 = 1.824 + 7.14 + 5.4
                = 14.364 CNY
    August day: sharp 3 h x 1.275 + peak 4 h x 1.02 + flat 5.4 + valley 1.824
                = 3.825 + 4.08 + 5.4 + 1.824 = 15.129 CNY
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from config.reporting import Tariff, TariffVersion
from reports.tariffs import (
    Pricer,
    band_at,
    day_segments,
    monthly_charges,
    price_intervals,
    tariff_for,
    version_on,
)

SH = ZoneInfo("Asia/Shanghai")

GD_PERIODS: list[dict[str, Any]] = [
    {"band": "valley", "hours": ["00:00-08:00"]},
    {"band": "peak", "hours": ["10:00-12:00", "14:00-19:00"]},
    # Listed after peak so that it wins where the two overlap.
    {"band": "sharp", "hours": ["11:00-12:00", "15:00-17:00"], "months": [7, 8, 9]},
]
GD_PRICES = {"flat": 0.60, "peak": 1.02, "valley": 0.228, "sharp": 1.275}


def guangdong(**version: Any) -> Tariff:
    return Tariff.model_validate(
        {
            "id": "gd-2021",
            "name": "广东 一般工商业 2021",
            "versions": [
                {
                    "effective_from": "2021-10-01",
                    "prices": GD_PRICES,
                    "periods": GD_PERIODS,
                    **version,
                }
            ],
        }
    )


def at(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=SH)


def constant(
    day: date, kwh_per_hour: float, step: timedelta = timedelta(minutes=15), days: int = 1
) -> Iterator[tuple[datetime, datetime, float]]:
    t = at(day, 0)
    end = t + timedelta(days=days)
    while t < end:
        yield t, t + step, kwh_per_hour * step / timedelta(hours=1)
        t += step


MARCH = date(2024, 3, 12)
AUGUST = date(2024, 8, 12)


def test_bands_of_the_guangdong_day() -> None:
    v = guangdong().versions[0]
    assert day_segments(v, 3) == [
        (0, 480, "valley"),
        (480, 600, "flat"),
        (600, 720, "peak"),
        (720, 840, "flat"),
        (840, 1140, "peak"),
        (1140, 1440, "flat"),
    ]
    assert band_at(v, at(MARCH, 7, 59)) == "valley"
    assert band_at(v, at(MARCH, 8)) == "flat"
    assert band_at(v, at(MARCH, 11, 30)) == "peak"
    assert band_at(v, at(AUGUST, 11, 30)) == "sharp"  # sharp is listed after peak: it wins
    assert band_at(v, at(AUGUST, 14, 59)) == "peak"
    assert band_at(v, at(AUGUST, 16, 59)) == "sharp"
    assert band_at(v, at(AUGUST, 17)) == "peak"
    assert band_at(v, at(AUGUST, 23, 59)) == "flat"


@pytest.mark.parametrize(
    "step", [timedelta(minutes=15), timedelta(hours=1), timedelta(hours=24)], ids=str
)
def test_domain_vector_march_and_august_days(step: timedelta) -> None:
    # One 24 h interval is split at every band edge in proportion to time: same money.
    tariff = guangdong()
    march = price_intervals(tariff, constant(MARCH, 1.0, step), SH)
    assert march.total_cost == pytest.approx(14.364)
    assert march.kwh == pytest.approx({"valley": 8.0, "flat": 9.0, "peak": 7.0})
    assert march.cost == pytest.approx({"valley": 1.824, "flat": 5.4, "peak": 7.14})
    august = price_intervals(tariff, constant(AUGUST, 1.0, step), SH)
    assert august.total_cost == pytest.approx(15.129)
    assert august.kwh == pytest.approx({"valley": 8.0, "flat": 9.0, "peak": 4.0, "sharp": 3.0})
    assert august.unpriced_kwh == 0.0


def test_intervals_given_in_utc_are_priced_in_local_time() -> None:
    # 02:00-03:00 UTC is 10:00-11:00 in Shanghai: peak, not valley.
    t0 = datetime(2024, 3, 12, 2, tzinfo=ZoneInfo("UTC"))
    priced = price_intervals(guangdong(), [(t0, t0 + timedelta(hours=1), 2.0)], SH)
    assert priced.cost == pytest.approx({"peak": 2.04})


def test_a_version_change_mid_month_prices_each_interval_by_its_own_day() -> None:
    # From 16 March 2024 flat is 0.70 (peak 1.19, valley 0.266): 8 x 0.266 + 7 x 1.19 + 9 x 0.70
    # = 2.128 + 8.33 + 6.3 = 16.758 per day; 15 March still costs 14.364.
    new_prices = {"flat": 0.70, "peak": 1.19, "valley": 0.266, "sharp": 1.4875}
    tariff = Tariff.model_validate(
        {
            "id": "gd",
            "name": "广东",
            "versions": [
                {"effective_from": "2021-10-01", "prices": GD_PRICES, "periods": GD_PERIODS},
                {"effective_from": "2024-03-16", "prices": new_prices, "periods": GD_PERIODS},
            ],
        }
    )
    assert version_on(tariff, date(2024, 3, 15)) is tariff.versions[0]
    assert version_on(tariff, date(2024, 3, 16)) is tariff.versions[1]
    assert version_on(tariff, date(2021, 9, 30)) is None
    two_days = price_intervals(tariff, constant(date(2024, 3, 15), 1.0, days=2), SH)
    assert two_days.total_cost == pytest.approx(14.364 + 16.758)

    # An interval across midnight: 23:00-24:00 on the 15th is flat at 0.60, 00:00-01:00 on the
    # 16th valley at the new 0.266 -- pricing does not depend on when it runs.
    night = Pricer(tariff, SH).split(at(date(2024, 3, 15), 23), at(date(2024, 3, 16), 1), 2.0)
    assert [(p.band, p.kwh) for p in night] == [("flat", 1.0), ("valley", 1.0)]
    assert sum(p.cost or 0 for p in night) == pytest.approx(0.60 + 0.266)

    # Before the first version: energy counted, no price.
    early = price_intervals(tariff, constant(date(2021, 9, 30), 1.0), SH)
    assert early.unpriced_kwh == pytest.approx(24.0) and early.cost == {}


def test_half_hour_spans_split_hourly_intervals() -> None:
    # Peak 08:30-11:30, valley 23:00-24:00 and 00:00-07:00: peak 3 h, valley 8 h, flat 13 h.
    # 3 x 1.00 + 8 x 0.30 + 13 x 0.60 = 3 + 2.4 + 7.8 = 13.2 per day at 1 kWh/h.
    tariff = Tariff.model_validate(
        {
            "id": "half",
            "name": "half hours",
            "versions": [
                {
                    "effective_from": "2024-01-01",
                    "prices": {"flat": 0.60, "peak": 1.00, "valley": 0.30},
                    "periods": [
                        {"band": "valley", "hours": ["23:00-24:00", "00:00-07:00"]},
                        {"band": "peak", "hours": ["08:30-11:30"]},
                    ],
                }
            ],
        }
    )
    v = tariff.versions[0]
    assert band_at(v, at(MARCH, 8, 29)) == "flat" and band_at(v, at(MARCH, 8, 30)) == "peak"
    assert band_at(v, at(MARCH, 11, 29)) == "peak" and band_at(v, at(MARCH, 11, 30)) == "flat"
    eight = Pricer(tariff, SH).split(at(MARCH, 8), at(MARCH, 9), 1.0)
    assert [(p.band, p.kwh) for p in eight] == [("flat", 0.5), ("peak", 0.5)]
    assert [p.cost for p in eight] == pytest.approx([0.30, 0.50])
    day = price_intervals(tariff, constant(MARCH, 1.0, timedelta(hours=1)), SH)
    assert day.kwh == pytest.approx({"valley": 8.0, "flat": 13.0, "peak": 3.0})
    assert day.total_cost == pytest.approx(13.2)


def test_fixed_and_demand_charges_prorated_over_a_version_change() -> None:
    one = guangdong(fixed_per_month=100.0, demand_per_kw_month=32.0)
    ch = monthly_charges(one, 2024, 3, max_kw=5.0)
    assert (ch.fixed, ch.demand) == pytest.approx((100.0, 160.0))

    # From 16 March: fixed 131, demand 40/kW. March has 31 days, 15 old and 16 new:
    # fixed = (100 x 15 + 131 x 16) / 31 = 3596 / 31 = 116.0
    # demand = 5 kW x (32 x 15 + 40 x 16) / 31 = 5 x 1120 / 31 = 180.645...
    two = Tariff.model_validate(
        {
            "id": "gd",
            "name": "广东",
            "versions": [
                {
                    "effective_from": "2021-10-01",
                    "prices": GD_PRICES,
                    "fixed_per_month": 100.0,
                    "demand_per_kw_month": 32.0,
                },
                {
                    "effective_from": "2024-03-16",
                    "prices": GD_PRICES,
                    "fixed_per_month": 131.0,
                    "demand_per_kw_month": 40.0,
                },
            ],
        }
    )
    ch = monthly_charges(two, 2024, 3, max_kw=5.0)
    assert ch.fixed == pytest.approx(116.0)
    assert ch.demand == pytest.approx(5 * 1120 / 31)
    assert monthly_charges(two, 2021, 9, max_kw=5.0).fixed == 0.0  # before any version


def test_tariff_for_a_building() -> None:
    default = Tariff.model_validate(
        {
            "id": "all",
            "name": "all",
            "versions": [{"effective_from": "2024-01-01", "prices": {"flat": 0.6}}],
        }
    )
    a_only = Tariff.model_validate(
        {
            "id": "a",
            "name": "A",
            "buildings": ["A"],
            "versions": [{"effective_from": "2024-01-01", "prices": {"flat": 0.8}}],
        }
    )
    assert tariff_for([default, a_only], "A") is a_only
    assert tariff_for([default, a_only], "B") is default
    assert tariff_for([a_only], "B") is None
    assert tariff_for([], "A") is None


def test_a_tariff_without_periods_is_flat_all_day() -> None:
    flat = TariffVersion.model_validate({"effective_from": "2024-01-01", "prices": {"flat": 0.5}})
    assert day_segments(flat, 6) == [(0, 1440, "flat")]
