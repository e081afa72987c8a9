"""``facmon maintenance due`` run in-process on a real SQLite ticket database, with the
schedules of tests/alerts/test_preventive.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from alerts import TicketStore
from alerts.preventive import open_due
from facmon.cli import main
from tests.alerts.test_preventive import SCHEDULES, SITE, local, site


def test_cli_maintenance_due_lists_due_and_overdue_jobs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "site.yaml"
    path.write_text(SITE + SCHEDULES + f"data_dir: {tmp_path}\n", encoding="utf-8")
    cfg = site(SITE + SCHEDULES + f"data_dir: {tmp_path}\n")
    store = TicketStore(cfg.tickets_url)
    try:
        open_due(cfg, store, local(2026, 11, 28))
        [el2] = store.list_tickets(device="el-2").items
        store.resolve_ticket(el2.id, local(2026, 12, 1, 15), "wang", "done")
    finally:
        store.close()

    rc = main(["maintenance", "due", "--config", str(path), "--at", "2026-12-03 09:00"])
    out = capsys.readouterr().out.splitlines()
    assert rc == 1  # el-1 is overdue
    assert out[0] == (
        "preventive maintenance as of 2026-12-03 09:00 (Asia/Shanghai): 3 job(s) open or due "
        "by 2026-12-17"
    )
    assert out[1].split()[:5] == ["2026-12-01", "overdue", "lift-15d", "el-1", "WO-000001"]
    assert "1.4 d late" in out[1] and out[1].endswith("(电梯半月维保)")
    assert out[2].split()[:4] == ["2026-12-10", "upcoming", "panel-ir", "pm-1"]
    assert "ticket opens 2026-12-10" in out[2]
    assert out[3].split()[:4] == ["2026-12-16", "upcoming", "lift-15d", "el-2"]
    assert "ticket opens 2026-12-13" in out[3]

    # A shorter horizon still lists what is open or overdue.
    rc = main(["maintenance", "due", "--config", str(path), "--at", "2026-12-03", "--days", "5"])
    lines = capsys.readouterr().out.splitlines()
    assert rc == 1 and len(lines) == 2 and lines[1].startswith("2026-12-01  overdue")

    # Once el-1 is done nothing is overdue.
    store = TicketStore(cfg.tickets_url)
    try:
        store.resolve_ticket(1, local(2026, 12, 3, 10), "li", "done")
    finally:
        store.close()
    assert main(["maintenance", "due", "--config", str(path), "--at", "2026-12-03 11:00"]) == 0


def test_cli_maintenance_due_without_schedules_or_with_a_bad_time(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # No --config: the demo site, which has no schedules.
    assert main(["maintenance", "due", "--data-dir", str(tmp_path)]) == 0
    assert "no maintenance schedules" in capsys.readouterr().out
    path = tmp_path / "site.yaml"
    path.write_text(SITE + SCHEDULES + f"data_dir: {tmp_path}\n", encoding="utf-8")
    assert main(["maintenance", "due", "--config", str(path), "--at", "tomorrow"]) == 2
    assert capsys.readouterr().err.startswith("--at: expected")
