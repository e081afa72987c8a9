"""GET /api/v1/reports/monthly over a real store and ticket database: formats, language, errors."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

import pypdfium2 as pdfium  # type: ignore[import-untyped]

from store.reading import Reading
from tests.api.conftest import NOW, Api

PATH = "/api/v1/reports/monthly"


def _fill(api: Api) -> None:
    """pm-1 (A座) uses 1 kWh every hour from 29 February until now (3 March, 12:00 local)."""
    t = datetime(2024, 2, 29, 0, 0, tzinfo=UTC)
    rows: list[Reading] = []
    kwh = 0.0
    while t <= NOW:
        rows.append(Reading(t, "pm-1", "energy_import", kwh, "kWh"))
        t += timedelta(minutes=15)
        kwh += 0.25
    api.store.write(rows)


def test_json_in_the_site_language_by_default(api: Api) -> None:
    _fill(api)
    r = api.get(PATH, month="2024-03")
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    assert r.headers["content-language"] == "zh-CN"
    body = r.json()
    assert body["lang"] == "zh-CN" and body["title"] == "月度管理报告 2024年3月"
    assert body["site_name"] == "滨江广场"
    assert [p["building"] for p in body["buildings"]] == ["A", "B"]
    # March runs until now: 2 days and 12 hours of it, at 1 kWh/h.
    assert body["data_until"] == "2024-03-03T12:00:00+08:00"
    a = {f["key"]: f for s in body["buildings"][0]["sections"] for f in s["figures"]}
    assert a["energy.total"]["value"] == 60.0 and a["energy.total"]["unit"] == "kWh"
    meters = {m["device"]: m for m in body["buildings"][0]["completeness"]}
    assert meters["pm-1"]["hours"] == 60 and meters["pm-1"]["completeness"] == 100.0


def test_html_in_english(api: Api) -> None:
    _fill(api)
    r = api.get(PATH, month="2024-03", format="html", lang="en")
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/html; charset=utf-8"
    assert "content-disposition" not in r.headers
    assert "Monthly management report March 2024" in r.text
    assert "The month is not over: data until 2024-03-03 12:00." in r.text
    assert "60 kWh" in r.text


def test_csv_is_an_attachment(api: Api) -> None:
    r = api.get(PATH, month="2024-03", format="csv")
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/csv; charset=utf-8"
    assert (
        r.headers["content-disposition"]
        == 'attachment; filename="riverside-monthly-2024-03-zh-CN.csv"'
    )
    rows = list(csv.reader(io.StringIO(r.content.decode("utf-8-sig"))))
    assert rows[0][:3] == ["building_id", "building", "section"]
    assert len(rows) > 10


def test_pdf_is_an_attachment_with_a_page_per_building(api: Api) -> None:
    _fill(api)
    r = api.get(PATH, month="2024-03", format="pdf", lang="en")
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/pdf"
    assert (
        r.headers["content-disposition"]
        == 'attachment; filename="riverside-monthly-2024-03-en.pdf"'
    )
    doc = pdfium.PdfDocument(r.content)
    try:
        assert len(doc) == 3
        assert "A座" in doc[1].get_textpage().get_text_range()
    finally:
        doc.close()


def test_bad_parameters_are_clear_json_errors(api: Api) -> None:
    cases = [
        ({"month": "2024-13"}, "month", "expected a month as YYYY-MM"),
        ({"month": "March"}, "month", "expected a month as YYYY-MM"),
        ({"month": "2024-04"}, "month", "2024-04 has not started yet"),
        ({"month": "2024-03", "format": "docx"}, "format", "'docx' is not one of html, pdf, csv"),
        ({"month": "2024-03", "lang": "fr"}, "lang", "'fr' is not one of zh-CN, en"),
    ]
    for params, name, message in cases:
        r = api.get(PATH, **params)
        assert r.status_code == 400, params
        err = r.json()["error"]
        assert err["code"] == "invalid_parameter"
        assert err["details"][0]["parameter"] == name
        assert message in err["message"], (params, err["message"])
    r = api.get(PATH)
    assert r.status_code == 400 and r.json()["error"]["details"][0]["parameter"] == "month"


def test_documented_in_openapi(api: Api) -> None:
    spec = api.client.get("/openapi.json").json()
    op = spec["paths"][PATH]["get"]
    assert {p["name"] for p in op["parameters"]} == {"month", "format", "lang"}
    assert set(op["responses"]["200"]["content"]) == {
        "application/json",
        "text/html",
        "application/pdf",
        "text/csv",
    }
    assert "MonthlyReport" in spec["components"]["schemas"]
