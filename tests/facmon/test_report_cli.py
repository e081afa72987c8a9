"""``facmon report monthly`` as a user runs it: help, a site config, the demo default, errors."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
import yaml

from alerts.tickets import TicketStore
from facmon.cli import main
from store.embedded import EmbeddedStore
from tests.reports.test_monthly import fill, open_tickets, site_data


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A site config file whose data dir holds March 2024 of the hand-made site."""
    d = tmp_path_factory.mktemp("site")
    data = {**site_data(), "data_dir": "data"}
    path = d / "site.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    store = EmbeddedStore(d / "data" / "readings.duckdb")
    fill(store)
    store.close()
    tickets = TicketStore(f"sqlite:///{d / 'data' / 'tickets.db'}")
    open_tickets(tickets)
    tickets.close()
    return path


@pytest.mark.parametrize("cmd", [["report"], ["report", "monthly"]], ids=" ".join)
def test_help(cmd: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main([*cmd, "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "usage: facmon report" in out
    if cmd[-1] == "monthly":
        for option in ("--month", "--format", "--lang", "--out", "--config"):
            assert option in out


def test_json_to_a_file_with_progress_on_stderr(
    site: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "march.json"
    rc = main(["report", "monthly", "--month", "2024-03", "--config", str(site), "--out", str(out)])
    assert rc == 0
    err = capsys.readouterr().err
    assert "Monthly report 2024-03" in err and "100%" in err
    assert f"wrote {out}" in err
    report = json.loads(out.read_text(encoding="utf-8"))
    assert report["lang"] == "zh-CN" and report["month"] == "2024-03"
    a = next(p for p in report["buildings"] if p["building"] == "A")
    total = next(f for s in a["sections"] for f in s["figures"] if f["key"] == "energy.total")
    assert total["value"] == pytest.approx(744.0) and total["text"] == "744 kWh"


def test_csv_in_english_to_stdout(site: Path, capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    argv = ["report", "monthly", "--month", "2024-03", "--config", str(site)]
    assert main([*argv, "--format", "csv", "--lang", "en"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsysbinary.readouterr().out.decode("utf-8-sig"))))
    total = next(r for r in rows if r["building_id"] == "B" and r["key"] == "energy.total")
    assert total["label"] == "Total energy" and float(total["value"]) == pytest.approx(1488.0)


def test_format_follows_the_out_suffix(site: Path, tmp_path: Path) -> None:
    out = tmp_path / "march.html"
    assert (
        main(["report", "monthly", "--month", "2024-03", "--config", str(site), "--out", str(out)])
        == 0
    )
    html = out.read_text(encoding="utf-8")
    assert html.startswith("<!DOCTYPE html>") and "月度管理报告 2024年3月" in html


def test_bad_month(site: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", "monthly", "--month", "2024-3", "--config", str(site)]) == 2
    assert (
        "--month: expected a month as YYYY-MM (e.g. 2024-03), got '2024-3'"
        in capsys.readouterr().err
    )


def test_without_config_it_reports_on_the_demo_site(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "demo"
    rc = main(["report", "monthly", "--month", "2024-03", "--data-dir", str(empty)])
    assert rc == 2
    err = capsys.readouterr().err
    assert f"no --config: reporting on the demo site in {empty}" in err
    assert "run 'facmon demo' first" in err
