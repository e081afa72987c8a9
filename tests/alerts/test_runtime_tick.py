"""The runtime's alert timer: ``Pipeline.tick_alerts`` with a real ticket database and store."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest

from alerts import TicketStatus
from facmon.runtime import Pipeline
from tests.alerts.test_engine import _device, site_config


def _pipeline(tmp_path: Path) -> Pipeline:
    # Polled every 100 ms and never answering (nothing is polled here): silent after 200 ms.
    cfg = site_config(
        devices=[_device("el-1", "elevator", "A", poll_interval="100ms")],
        data_dir=tmp_path,
    )
    return Pipeline.build(cfg)


async def _until(cond: Any, timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not cond():
        assert loop.time() < deadline, "timed out"
        await asyncio.sleep(0.02)


def test_the_timer_notices_a_silent_device(tmp_path: Path) -> None:
    p = _pipeline(tmp_path)
    p.tick_interval = 0.02

    async def run() -> None:
        task = asyncio.create_task(p.tick_alerts())
        try:
            await _until(lambda: p.tickets.list_tickets().total > 0)
        finally:
            task.cancel()

    try:
        asyncio.run(run())
        [ticket] = p.tickets.list_tickets().items
        assert ticket.fault_class == "communication_loss" and ticket.status is TicketStatus.NEW
    finally:
        p.close()


def test_a_failing_tick_is_logged_once_and_the_timer_keeps_going(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A fake failure: nothing real makes tick() raise past the engine's own error handling.
    p = _pipeline(tmp_path)
    p.tick_interval = 0.01
    calls = 0
    real_tick = p.engine.tick

    def flaky(now: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls <= 5:
            raise RuntimeError("boom")
        return real_tick(now)

    monkeypatch.setattr(p.engine, "tick", flaky)
    caplog.set_level(logging.INFO)

    async def run() -> None:
        task = asyncio.create_task(p.tick_alerts())
        try:
            await _until(lambda: calls > 8)
        finally:
            task.cancel()

    try:
        asyncio.run(run())
        failed = [r for r in caplog.records if "alert tick failed" in r.getMessage()]
        assert len(failed) == 1 and p.alert_errors == 5
        assert any("alert tick works again" in r.getMessage() for r in caplog.records)
    finally:
        p.close()
