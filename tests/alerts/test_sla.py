"""Service levels from the site config (T1): due times per priority and per fault class."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from alerts import TicketStore
from alerts.tickets import TicketRequest
from config.loader import ConfigError, load_config_text
from tests.alerts.test_engine import site_config

T0 = datetime(2026, 5, 4, 1, 0, tzinfo=UTC)


def test_due_times_follow_the_site_config(tmp_path: Path) -> None:
    cfg = site_config(
        data_dir=str(tmp_path),
        tickets={
            "sla": {"P2": "8h"},
            "sla_by_class": {"entrapment": {"P1": "1h"}},
            "reopen_window": "2h",
        },
    )
    store = TicketStore.for_site(cfg)
    try:
        trapped = store.open_or_add_occurrence(
            TicketRequest("el-1: 困人", "el-1", "A", "entrapment", "critical"), T0
        )
        assert trapped.priority == "P1" and trapped.due_at == T0 + timedelta(hours=1)
        fault = store.open_or_add_occurrence(
            TicketRequest("el-1: 故障", "el-1", "A", "elevator_fault", "critical"), T0
        )
        assert fault.due_at == T0 + timedelta(hours=4)  # P1 default kept
        meter = store.open_or_add_occurrence(
            TicketRequest("pm-1: 过流", "pm-1", "A", "overcurrent", "major"), T0
        )
        assert meter.due_at == T0 + timedelta(hours=8)
        assert store.reopen_window == timedelta(hours=2)
        # A reopened repair gets its class's deadline again, from the reopening.
        store.resolve_ticket(trapped.id, T0 + timedelta(minutes=20), "li-na")
        again = store.open_or_add_occurrence(
            TicketRequest("el-1: 困人", "el-1", "A", "entrapment", "critical"),
            T0 + timedelta(minutes=50),
        )
        assert again.id == trapped.id
        assert again.due_at == T0 + timedelta(minutes=50, hours=1)
    finally:
        store.close()


def test_a_service_level_must_be_positive() -> None:
    text = """
site: {id: s, name: S}
buildings: [{id: A, name: A, floor_area_m2: 1, floors: 1}]
tickets:
  sla_by_class:
    entrapment: {P1: 0s}
"""
    with pytest.raises(ConfigError) as e:
        load_config_text(text, "site.yaml")
    assert "site.yaml:6 tickets.sla_by_class.entrapment.P1" in str(e.value)
    assert "longer than 0s" in str(e.value)
