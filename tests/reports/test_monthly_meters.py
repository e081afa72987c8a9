"""A building with sub-meters: the printed report lists each power meter once, with its energy
and its data completeness in one table, and still lists every meter in the JSON and CSV.

The site: 滨江广场 A座 with a main meter (3 kWh/h) and two sub-meters under it (1 and 2 kWh/h;
the second sends nothing from 10 to 13 March, 96 of March's 744 hours) and a water meter that
sends nothing. March 2024, embedded store, 15-minute counter samples.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pypdfium2 as pdfium  # type: ignore[import-untyped]
import pytest

from alerts.tickets import TicketStore
from config.models import SiteConfig
from reports.context import ReportContext
from reports.monthly import build_monthly
from reports.monthly.model import MonthlyReport, Page
from reports.monthly.render import render_csv, render_html, render_pdf
from reports.period import Period
from store.embedded import EmbeddedStore
from store.reading import Reading

TZ = ZoneInfo("Asia/Shanghai")
MARCH = Period.month(2024, 3, TZ)
NOW = datetime(2024, 4, 2, 1, 0, tzinfo=UTC)  # March is over
STEP = timedelta(minutes=15)
RATES = {"pm-main": 3.0, "pm-s1": 1.0, "pm-s2": 2.0}  # kWh/h
GAP = {date(2024, 3, d) for d in range(10, 14)}  # pm-s2 sends nothing on these days
NAMES = {"pm-main": "A座 总表", "pm-s1": "A座 1# 分表", "pm-s2": "A座 2# 分表"}


def _device(id_: str, kind: str, profile: str, **extra: Any) -> dict[str, Any]:
    return {
        "id": id_,
        "kind": kind,
        "location": {"building": "A", "floor": "B1"},
        "source": {"type": "modbus_tcp", "host": "10.0.0.5", "unit_id": 3, "profile": profile},
        "poll_interval": "15m",
        **extra,
    }


def site_config() -> SiteConfig:
    meter = "generic_power_meter_3p"
    return SiteConfig.model_validate(
        {
            "site": {"id": "riverside", "name": "滨江广场", "timezone": "Asia/Shanghai"},
            "buildings": [{"id": "A", "name": "A座", "floor_area_m2": 20000, "floors": 20}],
            "devices": [
                _device("pm-main", "power_meter", meter, name=NAMES["pm-main"]),
                _device("pm-s1", "power_meter", meter, name=NAMES["pm-s1"], parent="pm-main"),
                _device("pm-s2", "power_meter", meter, name=NAMES["pm-s2"], parent="pm-main"),
                _device("wm-a", "water_meter", "generic_water_meter", name="A座 进水总表"),
            ],
        }
    )


def readings() -> list[Reading]:
    out: list[Reading] = []
    t, end = MARCH.start - timedelta(days=1), MARCH.end + timedelta(days=1)
    hours = 0.0
    while t < end:
        for device, rate in RATES.items():
            if device == "pm-s2" and t.astimezone(TZ).date() in GAP:
                continue
            out.append(Reading(t, device, "energy_import", round(1000.0 + rate * hours, 4), "kWh"))
        t += STEP
        hours += 0.25
    return out


@pytest.fixture(scope="module")
def rc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReportContext]:
    d = tmp_path_factory.mktemp("meters")
    store = EmbeddedStore(d / "readings.duckdb")
    store.write(readings())
    tickets = TicketStore(f"sqlite:///{d / 'tickets.db'}")
    yield ReportContext(site_config(), store, tickets, clock=lambda: NOW)
    tickets.close()
    store.close()


@pytest.fixture(scope="module")
def zh(rc: ReportContext) -> MonthlyReport:
    return build_monthly(rc, MARCH, lang="zh-CN")


@pytest.fixture(scope="module")
def en(rc: ReportContext) -> MonthlyReport:
    return build_monthly(rc, MARCH, lang="en")


def _page_a(report: MonthlyReport) -> Page:
    return next(p for p in report.buildings if p.building == "A")


def _rows(html: str, key: str) -> list[tuple[str, str, list[str]]]:
    """(row class, row header, cells) of the table with ``data-key=key`` on A座's page."""
    page = html[html.index('id="page-A"') :]
    table = page[page.index(f'data-key="{key}"') :]
    table = table[: table.index("</table>")]
    body = table[table.index("<tbody>") :]
    rows = re.findall(r'<tr(?: class="(\w+)")?><th>(.*?)</th>(.*?)</tr>', body)
    return [(cls, name, re.findall(r"<td>(.*?)</td>", cells)) for cls, name, cells in rows]


def test_the_json_keeps_every_meter_and_keys_the_meter_rows(zh: MonthlyReport) -> None:
    page = _page_a(zh)
    energy = next(s for s in page.sections if s.key == "energy")
    meters = next(t for t in energy.tables if t.key == "energy.meters")
    assert meters.row_keys == ["pm-main", "pm-s1", "pm-s2"]
    assert [m.device for m in page.completeness] == ["pm-main", "pm-s1", "pm-s2", "wm-a"]
    s2 = next(m for m in page.completeness if m.device == "pm-s2")
    assert (s2.hours_with_data, s2.hours) == (744 - 96, 744)


def test_one_table_lists_every_power_meter_with_energy_and_completeness(
    zh: MonthlyReport,
) -> None:
    html = render_html(zh)
    assert "各表计用电量与数据完整率" in html
    rows = _rows(html, "energy.meters")
    assert [name for _, name, _ in rows] == list(NAMES.values())
    by_name = {name: (cls, cells) for cls, name, cells in rows}
    # kWh, cost (no tariff), peak kW, completeness
    assert by_name["A座 总表"] == ("", ["2,232", "—", "3.0", "100.0%"])
    assert by_name["A座 1# 分表"][1][0] == "744" and by_name["A座 1# 分表"][1][3] == "100.0%"
    cls, cells = by_name["A座 2# 分表"]
    assert cells[3] == "87.1%（648 / 744 小时）" and cls == "low"  # below 90 %: in red
    # The completeness block lists only what that table does not: the water meter.
    block = html[html.index('<div class="completeness', html.index('id="page-A"')) :]
    block = block[: block.index("</div>")]
    assert "电表的数据完整率见上方「各表计用电量与数据完整率」表。" in block
    assert "A座 进水总表" in block and "0.0%" in block
    assert not any(name in block for name in NAMES.values())


def test_the_csv_still_has_every_meters_completeness(zh: MonthlyReport) -> None:
    rows = list(csv.DictReader(io.StringIO(render_csv(zh).decode("utf-8-sig"))))
    keys = {r["key"] for r in rows if r["type"] == "completeness"}
    assert keys == {f"completeness.{d}" for d in [*NAMES, "wm-a"]}


def test_the_pdf_prints_the_merged_table(en: MonthlyReport, tmp_path: Path) -> None:
    doc = pdfium.PdfDocument(render_pdf(en))
    try:
        text = "".join(doc[i].get_textpage().get_text_range() for i in range(len(doc)))
    finally:
        doc.close()
    flat = re.sub(r"\s+", " ", text)
    assert "Energy and data completeness per meter" in flat
    for name in [*NAMES.values(), "A座 进水总表"]:
        assert name in flat, name
    assert "87.1 % (648 / 744 h)" in flat
