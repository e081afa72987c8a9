"""The monthly management report built from a small hand-made site: JSON, HTML, PDF and CSV.

The site: 滨江广场 with 2 buildings. A座 has one power meter at a constant 1 kWh/h and one lift;
B座 has one power meter at 2 kWh/h (with a day of missing data) and a water main with a night
leak. March 2024 under the Guangdong-style tariff of ../shared/domain.md (flat 0.60 CNY/kWh,
peak 1.02, valley 0.228): a March day at 1 kWh/h costs 14.364 CNY, so the month (31 days)
costs 445.284 CNY at A座 and twice that, 890.568 CNY, at B座.
"""

from __future__ import annotations

import csv
import ctypes
import email
import email.policy
import io
import json
import socket
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pypdfium2 as pdfium  # type: ignore[import-untyped]
import pypdfium2.raw as pdfium_c  # type: ignore[import-untyped]
import pytest
from aiosmtpd.controller import Controller

from alerts.tickets import TicketRequest, TicketStore
from config.models import SiteConfig
from reports.context import ReportContext
from reports.monthly import build_monthly, render
from reports.monthly.mail import MonthlyMailer, due_month
from reports.monthly.model import MonthlyReport, SectionKey, SectionView
from reports.monthly.render import CSV_HEADER, render_csv, render_html, render_json, render_pdf
from reports.monthly.sections import SECTION_KEYS, Cache, Section, SectionInput
from reports.period import Period
from store.base import Store
from store.embedded import EmbeddedStore
from store.reading import Reading
from tests.fixtures.stores import StoreFactory

TZ = ZoneInfo("Asia/Shanghai")
MARCH = Period.month(2024, 3, TZ)
FEBRUARY = Period.month(2024, 2, TZ)
NOW = datetime(2024, 4, 2, 1, 0, tzinfo=UTC)  # 09:00 on 2 April, site time: March is over
GAP_DAY = date(2024, 3, 10)  # pm-b sends nothing that day
LEAK_NIGHTS = [date(2024, 3, d) for d in range(12, 17)]  # 0.3 m3/h at night on these days
STEP = timedelta(minutes=15)

MARCH_DAY_COST = 14.364  # domain.md test vector: flat 0.60, constant 1 kWh/h, a March day


def _device(id_: str, kind: str, building: str, profile: str, **extra: Any) -> dict[str, Any]:
    return {
        "id": id_,
        "name": extra.pop("name", id_),
        "kind": kind,
        "location": {"building": building, "floor": "B1"},
        "source": {"type": "modbus_tcp", "host": "10.0.0.5", "unit_id": 3, "profile": profile},
        "poll_interval": "15m",  # every sample covers up to 45 min (3 polls)
        **extra,
    }


def site_data() -> dict[str, Any]:
    """The site as the YAML of a config file would give it."""
    return {
        "site": {"id": "riverside", "name": "滨江广场", "timezone": "Asia/Shanghai"},
        "buildings": [
            {"id": "A", "name": "A座", "floor_area_m2": 20000, "floors": 20},
            {"id": "B", "name": "B座", "floor_area_m2": 15000, "floors": 12},
        ],
        "devices": [
            _device("pm-a", "power_meter", "A", "generic_power_meter_3p", name="A座 总表"),
            _device("pm-b", "power_meter", "B", "generic_power_meter_3p", name="B座 总表"),
            _device("el-a", "elevator", "A", "elevator_gbt24476", name="A座 1号客梯"),
            _device("wm-b", "water_meter", "B", "generic_water_meter", name="B座 进水总表"),
        ],
        "tariffs": [
            {
                "id": "gd",
                "name": "广东 一般工商业",
                "versions": [
                    {
                        "effective_from": "2021-01-01",
                        "prices": {"flat": 0.60, "peak": 1.02, "valley": 0.228, "sharp": 1.275},
                        "periods": [
                            {"band": "peak", "hours": ["10:00-12:00", "14:00-19:00"]},
                            {"band": "valley", "hours": ["00:00-08:00"]},
                            {
                                "band": "sharp",
                                "hours": ["11:00-12:00", "15:00-17:00"],
                                "months": [7, 8, 9],
                            },
                        ],
                    }
                ],
            }
        ],
        "reports": {
            "water": {"price_per_m3": 4.0},
            "savings": {"baseline_start": "2024-02-01", "baseline_end": "2024-03-01"},
        },
    }


def site_config(**overrides: Any) -> SiteConfig:
    return SiteConfig.model_validate({**site_data(), **overrides})


def _times(start: datetime, end: datetime, step: timedelta) -> Iterator[datetime]:
    t = start
    while t < end:
        yield t
        t += step


def rate(t: datetime) -> float:
    """kWh/h of pm-a at ``t`` (pm-b uses twice as much): 1 in March; in February 1.1 on even
    days and 1.0 on odd ones, so the baseline has some spread for the fit to measure."""
    local = t.astimezone(TZ)
    if local.month == 2 and local.day % 2 == 0:
        return 1.1
    return 1.0


def readings() -> list[Reading]:
    """Power from 31 January (February is the comparison month and the savings baseline),
    the rest from 29 February; all until 1 April."""
    start = FEBRUARY.start - timedelta(days=1)
    end = MARCH.end + timedelta(days=1)
    out: list[Reading] = []
    kwh = 0.0
    for t in _times(start, end, STEP):
        out.append(Reading(t, "pm-a", "energy_import", round(1000.0 + kwh, 4), "kWh"))
        if t.astimezone(TZ).date() != GAP_DAY:
            out.append(Reading(t, "pm-b", "energy_import", round(5000.0 + 2 * kwh, 4), "kWh"))
        kwh += rate(t) * 0.25
    volume = 100.0
    for t in _times(MARCH.start - timedelta(days=1), end, STEP):
        local = t.astimezone(TZ)
        mode = 7.0 if date(2024, 3, 5) == local.date() and 8 <= local.hour < 14 else 1.0
        out.append(Reading(t, "el-a", "service_mode", mode))
        out.append(Reading(t, "el-a", "fault_code", 31.0 if mode == 7.0 else 0.0))
        out.append(Reading(t, "el-a", "entrapment", 0.0))
        night = local.hour < 6
        flow = (0.3 if local.date() in LEAK_NIGHTS else 0.0) if night else 2.0
        out.append(Reading(t, "wm-b", "flow_rate", flow, "m3/h"))
        out.append(Reading(t, "wm-b", "volume", round(volume, 3), "m3"))
        volume += flow * 0.25
    return out


def fill(store: Store) -> None:
    batch = readings()
    for i in range(0, len(batch), 20_000):
        store.write(batch[i : i + 20_000])


def open_tickets(tickets: TicketStore) -> None:
    """One lift repair, opened on 5 March at 08:05 and resolved at 13:55 (P-priority SLA)."""
    t0 = datetime(2024, 3, 5, 0, 5, tzinfo=UTC)
    rec = tickets.open_or_add_occurrence(
        TicketRequest(
            title="A座 1号客梯 故障 31",
            device="el-a",
            building="A",
            fault_class="elevator_fault",
            severity="major",
        ),
        t0,
    )
    tickets.resolve_ticket(rec.id, t0 + timedelta(hours=5, minutes=50), "wang.wei", "门锁回路修复")


@pytest.fixture
def tickets(tmp_path: Path) -> Iterator[TicketStore]:
    ts = TicketStore(f"sqlite:///{tmp_path / 'tickets.db'}")
    open_tickets(ts)
    yield ts
    ts.close()


@pytest.fixture(scope="module")
def filled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReportContext]:
    """One embedded store and ticket db for the rendering tests (built once: they only read)."""
    d = tmp_path_factory.mktemp("monthly")
    store = EmbeddedStore(d / "readings.duckdb")
    fill(store)
    ts = TicketStore(f"sqlite:///{d / 'tickets.db'}")
    open_tickets(ts)
    yield ReportContext(site_config(), store, ts, clock=lambda: NOW)
    ts.close()
    store.close()


@pytest.fixture(scope="module")
def section_cache() -> Cache:
    """Section reports shared by the zh-CN and en builds: the figures do not depend on it."""
    return {}


@pytest.fixture(scope="module")
def zh(filled: ReportContext, section_cache: Cache) -> MonthlyReport:
    return build_monthly(filled, MARCH, lang="zh-CN", cache=section_cache)


@pytest.fixture(scope="module")
def en(filled: ReportContext, section_cache: Cache) -> MonthlyReport:
    return build_monthly(filled, MARCH, lang="en", cache=section_cache)


@pytest.fixture(scope="module")
def zh_pdf(zh: MonthlyReport) -> bytes:
    return render_pdf(zh)


def figures(report: dict[str, Any], building: str | None) -> dict[str, dict[str, Any]]:
    """key -> figure of one page of the JSON (building None: the summary)."""
    page = (
        report["summary"]
        if building is None
        else next(p for p in report["buildings"] if p["building"] == building)
    )
    return {f["key"]: f for s in page["sections"] for f in s["figures"]}


def section(report: dict[str, Any], building: str | None, key: str) -> dict[str, Any]:
    page = (
        report["summary"]
        if building is None
        else next(p for p in report["buildings"] if p["building"] == building)
    )
    found: dict[str, Any] = next(s for s in page["sections"] if s["key"] == key)
    return found


# -- figures, on both backends ----------------------------------------------------------------
A_FEB = 15 * 24.0 + 14 * 26.4  # February: 15 odd days at 1.0 kWh/h, 14 even ones at 1.1
A_MU = A_FEB / 29  # the intercept-only baseline: mean kWh per February day


def test_json_figures_on_both_backends(store_factory: StoreFactory, tickets: TicketStore) -> None:
    store = store_factory()
    fill(store)
    rc = ReportContext(site_config(), store, tickets, clock=lambda: NOW)
    report = json.loads(render_json(build_monthly(rc, MARCH, lang="en")))

    assert report["month"] == "2024-03" and report["lang"] == "en"
    assert [p["building"] for p in [report["summary"], *report["buildings"]]] == [None, "A", "B"]
    for page in [report["summary"], *report["buildings"]]:
        assert [s["key"] for s in page["sections"]] == [
            "energy",
            "savings",
            "uptime",
            "water",
            "maintenance",
        ]
        assert all(s["available"] for s in page["sections"]), page["sections"]

    a, b, site = figures(report, "A"), figures(report, "B"), figures(report, None)
    # Energy: 1 and 2 kWh/h for 31 days; cost = 31 x the domain.md March day (14.364 CNY).
    assert a["energy.total"]["value"] == pytest.approx(744.0)
    assert a["energy.total"]["unit"] == "kWh" and a["energy.total"]["text"] == "744 kWh"
    assert b["energy.total"]["value"] == pytest.approx(1488.0)
    assert site["energy.total"]["value"] == pytest.approx(2232.0)
    assert a["energy.cost"]["value"] == pytest.approx(31 * MARCH_DAY_COST, abs=0.01)
    assert b["energy.cost"]["value"] == pytest.approx(2 * 31 * MARCH_DAY_COST, abs=0.01)
    assert a["energy.cost"]["unit"] == "CNY"
    assert a["energy.vs_previous"]["value"] == pytest.approx((744 - A_FEB) / A_FEB * 100, abs=0.01)
    # Availability: 6 h out of service (fault 31) on 5 March, up the other 738 h.
    assert a["uptime.availability"]["value"] == pytest.approx(738 / 744 * 100, abs=1e-3)
    assert a["uptime.availability"]["unit"] == "%"
    assert a["uptime.mttr"]["value"] == pytest.approx(6.0)
    assert a["uptime.failures"]["value"] == 1
    # Water: 0.3 m3/h at night for 5 nights -> 0.3 x 24 h x 5 = 36 m3, at 4 CNY/m3 = 144 CNY.
    assert b["water.leaks"]["value"] == 1
    assert b["water.loss"]["value"] == pytest.approx(36.0, abs=0.01)
    assert b["water.loss"]["unit"] == "m3"
    assert b["water.total"]["value"] == pytest.approx(31 * 18 * 2.0 + 5 * 6 * 0.3, abs=0.01)
    # Maintenance: the lift repair of 5 March, resolved in 5 h 50 min.
    assert a["maint.opened"]["value"] == 1 and b["maint.opened"]["value"] == 0
    assert a["maint.mttr"]["value"] == pytest.approx(35 / 6, abs=1e-3)

    # Savings: intercept-only baseline on February; never without its fit.
    sav = section(report, "A", "savings")
    assert a["savings.saved"]["value"] == pytest.approx(31 * A_MU - 744, abs=0.05)
    fit = sav["fit"]
    assert fit["n"] == 29 and fit["verdict"] == "pass"
    assert fit["r2"] == pytest.approx(0.0, abs=1e-9)  # an intercept explains no variance
    mean = A_MU
    sse = 15 * (24 - mean) ** 2 + 14 * (26.4 - mean) ** 2
    assert fit["cv_rmse"] == pytest.approx((sse / 28) ** 0.5 / mean * 100, abs=1e-3)
    assert fit["nmbe"] == pytest.approx(0.0, abs=1e-6)
    assert fit["cv_rmse_limit"] == pytest.approx(15.0) and fit["nmbe_limit"] == pytest.approx(5.0)
    assert fit["uncertainty"] is not None and fit["uncertainty"] > 0

    # Completeness per meter: pm-b sent nothing on 10 March.
    rows = {m["device"]: m for p in report["buildings"] for m in p["completeness"]}
    assert set(rows) == {"pm-a", "pm-b", "el-a", "wm-b"}
    assert rows["pm-b"]["hours"] == 744 and rows["pm-b"]["hours_with_data"] == 720
    assert rows["pm-b"]["completeness"] == pytest.approx(720 / 744 * 100, abs=0.01)
    assert rows["pm-a"]["completeness"] == 100.0

    overview = report["summary"]["overview"]
    keys = [c["key"] for c in overview["columns"]]
    assert overview["rows"][0][0] == "A座"
    assert overview["rows"][1][keys.index("energy.total")] == pytest.approx(1488.0)


# -- sections that are missing or fail ----------------------------------------------------------
def _missing(rc: ReportContext, period: Period, building: str | None) -> object:
    raise ModuleNotFoundError("No module named 'reports.water'", name="reports.water")


def _boom(rc: ReportContext, period: Period, building: str | None) -> object:
    raise RuntimeError("the store said no")


def _never(rep: object, inp: SectionInput) -> SectionView:
    raise AssertionError("a view of a failed fetch is never called")


def test_a_missing_or_failing_section_is_shown_as_not_available(
    filled: ReportContext, section_cache: Cache
) -> None:
    report = build_monthly(
        filled,
        MARCH,
        lang="zh-CN",
        replace={
            "water": Section("water", _missing, _never),
            "uptime": Section("uptime", _boom, _never),
        },
        cache={k: v for k, v in section_cache.items() if k[0] not in ("water", "uptime")},
    )
    for page in [report.summary, *report.buildings]:
        by_key = {s.key: s for s in page.sections}
        assert not by_key["water"].available
        assert by_key["water"].reason == "报表模块 reports.water 尚未安装"
        assert not by_key["uptime"].available
        assert by_key["uptime"].reason == "生成时出错（RuntimeError: the store said no）"
        assert by_key["energy"].available and by_key["maintenance"].available
    html = render_html(report)
    assert "本部分暂不可用：报表模块 reports.water 尚未安装" in html
    assert "744 kWh" in html  # the rest of the report is there


# -- HTML ---------------------------------------------------------------------------------------
def test_html_zh_cn_labels_and_figures(zh: MonthlyReport) -> None:
    html = render_html(zh)
    for text in (
        '<html lang="zh-CN">',
        "滨江广场",
        "月度管理报告 2024年3月",
        "项目总览",
        "各楼栋概况",
        "能耗与电费",
        "节能量核证",
        "设备可用率（电梯）",
        "用水与漏水",
        "维修工单",
        "数据完整率（按表计）",
        "744 kWh",
        "1,488 kWh",
        "445 元",
        "99.19%",
        "36.0 m³",
        "96.8%",
        "720 / 744",
        # the savings figure with everything that qualifies it
        "36 kWh",
        "基准模型拟合质量",
        "R²",
        "CV(RMSE)",
        "NMBE",
        "CV(RMSE) ≤ 15%，|NMBE| ≤ 5%",
        "通过",
        "置信度 90%",
        # charts: axis labels and text alternatives
        "电量 (kWh)",
        "可用率 (%)",
        "目标 98.0%",
        "每日用电量：31 个数据点，最低 24 kWh（3月1日），最高 24 kWh（3月31日），合计 744 kWh。",
    ):
        assert text in html, text
    # summary: daily + TOU, lifts, leak loss; A座: daily + TOU, savings, lifts; B座: daily + TOU,
    # savings, night flow (no lift there, and A座 has no water meter)
    assert html.count("<svg") == 12
    assert html.count('role="img"') == html.count("<desc ") == 12


def test_html_en(en: MonthlyReport) -> None:
    html = render_html(en)
    for text in (
        '<html lang="en">',
        "Monthly management report March 2024",
        "Portfolio summary",
        "Energy and cost",
        "Verified energy savings",
        "Availability (elevators)",
        "Data completeness per meter",
        "744 kWh",
        "445 CNY",
        "99.19 %",
        "Energy (kWh)",
        "Baseline model fit",
        "pass",
    ):
        assert text in html, text
    assert "月度管理报告" not in html and "能耗" not in html


# -- PDF ----------------------------------------------------------------------------------------
def _text_and_font(page: pdfium.PdfPage, needle: str) -> tuple[str, str]:
    tp = page.get_textpage()
    text: str = tp.get_text_range()
    i = text.index(needle)
    buf = ctypes.create_string_buffer(256)
    flags = ctypes.c_int()
    pdfium_c.FPDFText_GetFontInfo(tp, i, buf, 256, ctypes.byref(flags))
    return text, buf.value.decode()


def _ink(page: pdfium.PdfPage) -> float:
    """Share of non-white pixels of the page rendered at a low resolution."""
    image = page.render(scale=0.5, grayscale=True).to_pil()
    pixels = list(image.get_flattened_data())
    return sum(1 for p in pixels if p < 200) / len(pixels)


def test_pdf_pages_text_layer_and_cjk_font(zh_pdf: bytes) -> None:
    assert zh_pdf.startswith(b"%PDF")
    doc = pdfium.PdfDocument(zh_pdf)
    try:
        assert len(doc) == 1 + 2  # the summary, then one page per building
        for i in range(len(doc)):
            page = doc[i]
            w, h = page.get_size()
            assert (round(w), round(h)) == (595, 842)  # A4 in points
            assert _ink(page) > 0.03, f"page {i + 1} looks blank"
        # The text layer has the Chinese text, in the embedded CJK font (not tofu boxes).
        text, font = _text_and_font(doc[0], "滨江广场")
        assert font.endswith("Report-CJK")
        assert "月度管理报告 2024年3月" in text and "项目总览" in text
        assert "第 1 页 / 共 3 页" in text
        text, font = _text_and_font(doc[1], "A座")
        assert "Report-CJK" in font
        assert "能耗与电费" in text and "744 kWh" in text and "第 2 页 / 共 3 页" in text
        text, _ = _text_and_font(doc[2], "B座")
        assert "36.0 m³" in text and "96.8%" in text
    finally:
        doc.close()


def test_pdf_en(en: MonthlyReport) -> None:
    doc = pdfium.PdfDocument(render_pdf(en))
    try:
        assert len(doc) == 3
        text = doc[0].get_textpage().get_text_range()
        assert "Monthly management report March 2024" in text and "Page 1 of 3" in text
        assert "滨江广场" in text  # the site's own name stays as configured
    finally:
        doc.close()


# -- CSV ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("lang", ["zh-CN", "en"])
def test_csv_parses_with_a_header(lang: str, zh: MonthlyReport, en: MonthlyReport) -> None:
    report = zh if lang == "zh-CN" else en
    body = render_csv(report)
    assert body.startswith(b"\xef\xbb\xbf")  # BOM: Excel then reads UTF-8
    rows = list(csv.DictReader(io.StringIO(body.decode("utf-8-sig"))))
    assert list(rows[0]) == list(CSV_HEADER)
    total = next(r for r in rows if r["building_id"] == "A" and r["key"] == "energy.total")
    assert float(total["value"]) == pytest.approx(744.0) and total["unit"] == "kWh"
    assert total["label"] == ("总用电量" if lang == "zh-CN" else "Total energy")
    days = [r for r in rows if r["building_id"] == "B" and r["key"] == "energy.daily.kwh"]
    assert len(days) == 31 and days[0]["category"] == "2024-03-01"
    fit = {r["key"]: r for r in rows if r["building_id"] == "A" and r["type"] == "fit"}
    assert {"fit.n", "fit.r2", "fit.cv_rmse", "fit.nmbe", "fit.verdict", "fit.uncertainty"} <= set(
        fit
    )
    meter = next(r for r in rows if r["key"] == "completeness.pm-b")
    assert float(meter["value"]) == pytest.approx(96.77, abs=0.01) and meter["unit"] == "%"


def test_formats_have_their_content_types(zh: MonthlyReport) -> None:
    assert render(zh, "json").content_type == "application/json"
    assert render(zh, "csv").filename == "riverside-monthly-2024-03-zh-CN.csv"
    assert json.loads(render(zh, "json").body)["title"] == "月度管理报告 2024年3月"
    with pytest.raises(ValueError, match="unknown format 'docx'"):
        render(zh, "docx")


# -- a month still running ------------------------------------------------------------------
def _empty(key: SectionKey) -> Section:
    """A section with nothing to say: the report's frame is tested on its own."""

    def view(rep: object, inp: SectionInput) -> SectionView:
        return SectionView(key=key, title=inp.tr(f"section.{key}"), available=True)

    return Section(key, lambda rc, period, building: None, view)


def test_a_running_month_counts_completeness_up_to_now(filled: ReportContext) -> None:
    noon_3rd = datetime(2024, 3, 3, 4, 0, tzinfo=UTC)  # 12:00 on 3 March, site time
    rc = ReportContext(filled.config, filled.store, filled.tickets, clock=lambda: noon_3rd)
    report = build_monthly(rc, MARCH, lang="zh-CN", replace={k: _empty(k) for k in SECTION_KEYS})
    assert report.data_until == noon_3rd
    rows = {m.device: m for p in report.buildings for m in p.completeness}
    assert rows["pm-a"].hours == 2 * 24 + 12 and rows["pm-a"].completeness == 100.0
    assert "本月尚未结束：数据截至 2024-03-03 12:00。" in render_html(report)


# -- e-mail on the 1st ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("local", "last_sent", "due"),
    [
        (datetime(2024, 4, 1, 7, 59), None, None),  # not yet 08:00 on the 1st
        (datetime(2024, 4, 1, 8, 0), None, "2024-03"),
        (datetime(2024, 4, 17, 10, 0), None, "2024-03"),  # down on the 1st: catch up
        (datetime(2024, 4, 2, 8, 0), "2024-03", None),  # sent already
        (datetime(2024, 5, 1, 8, 0), "2024-03", "2024-04"),
        (datetime(2025, 1, 1, 9, 0), "2024-11", "2024-12"),  # across the year
    ],
)
def test_due_month(local: datetime, last_sent: str | None, due: str | None) -> None:
    period = due_month(local.replace(tzinfo=TZ), TZ, last_sent)
    assert (period.label if period else None) == due


class _Inbox:
    """aiosmtpd handler keeping every message it accepts."""

    def __init__(self) -> None:
        self.envelopes: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.envelopes.append(envelope)
        return "250 OK"


@pytest.fixture
def smtp_server() -> Iterator[tuple[_Inbox, int]]:
    """A real SMTP server on loopback (aiosmtpd) on a free port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    inbox = _Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    yield inbox, port
    controller.stop()


def test_the_report_is_e_mailed_once_on_the_first(
    filled: ReportContext, smtp_server: tuple[_Inbox, int], tmp_path: Path
) -> None:
    inbox, port = smtp_server
    data = site_data()
    data["reports"]["monthly"] = {
        "schedule": True,
        "email_to": ["manager@example.com", "engineering@example.com"],
        "smtp_host": "127.0.0.1",
        "smtp_port": port,
        "mail_from": "facmon@riverside.example",
    }
    now = datetime(2024, 4, 1, 0, 30, tzinfo=UTC)  # 08:30 on 1 April, site time
    rc = ReportContext(
        SiteConfig.model_validate(data), filled.store, filled.tickets, clock=lambda: now
    )
    state = tmp_path / "monthly-mail.json"

    assert MonthlyMailer(rc, state).tick() == "2024-03"
    assert len(inbox.envelopes) == 1
    env = inbox.envelopes[0]
    assert env.mail_from == "facmon@riverside.example"
    assert env.rcpt_tos == ["manager@example.com", "engineering@example.com"]
    msg = email.message_from_bytes(env.content, policy=email.policy.default)
    assert msg["Subject"] == "滨江广场 · 月度管理报告 2024年3月"
    body = msg.get_body(preferencelist=("plain",))
    assert body is not None
    text = body.get_content()
    assert "[能耗与电费]" in text and "总用电量: 2,232 kWh" in text
    files = {p.get_filename(): p for p in msg.iter_attachments()}
    assert set(files) == {
        "riverside-monthly-2024-03-zh-CN.pdf",
        "riverside-monthly-2024-03-zh-CN.csv",
    }
    assert files["riverside-monthly-2024-03-zh-CN.pdf"].get_content().startswith(b"%PDF")

    # Once only: again now, or after a restart (a new mailer reading the same state).
    assert MonthlyMailer(rc, state).tick() is None
    assert len(inbox.envelopes) == 1
    assert json.loads(state.read_text(encoding="utf-8"))["last_sent"] == "2024-03"
