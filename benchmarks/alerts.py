"""Alert evaluation throughput and sample-to-page latency (issue 5's figures).

    python benchmarks/alerts.py [--devices 500] [--rules 4] [--samples 400000] [--trials 200]
                                [--db sqlite|postgresql URL]

* Throughput: samples per second through :meth:`AlertEngine.evaluate` with ``--devices``
  devices and ``--rules`` rules applying to each (500 x 4 = 2,000 rule instances), in poll
  batches (one batch = one device's metrics), values inside their limits (the steady state).
* Latency: ``--trials`` times, one device's sample crosses a limit (``for`` = 0). Measured from
  the moment the sample is handed to the engine to (a) the ticket row committed (``evaluate``
  returns after the commit) and (b) a real HTTP receiver on loopback receiving the page, with
  the :class:`Pager` running as it does in ``facmon run`` (woken by the new ticket).

The ticket database is a SQLite file in a temporary directory unless ``--db`` gives a URL.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import contextlib

from alerts.engine import AlertEngine
from alerts.paging import Pager
from alerts.tickets import TicketStore
from config.models import SiteConfig
from store.reading import Reading

METRICS = ("current_a", "voltage_a", "power_factor", "temperature_c", "power_kw", "energy_kwh")


def site(devices: int, rules: int, hook: str) -> SiteConfig:
    return SiteConfig.model_validate(
        {
            "site": {"id": "bench", "name": "Bench"},
            "buildings": [{"id": "A", "name": "A", "floor_area_m2": 1, "floors": 1}],
            "devices": [
                {
                    "id": f"pm-{i:04d}",
                    "name": f"Panel {i}",
                    "kind": "power_meter",
                    "location": {"building": "A", "floor": "1F"},
                    "source": {
                        "type": "modbus_tcp",
                        "host": "127.0.0.1",
                        "profile": "generic_power_meter_3p",
                    },
                }
                for i in range(devices)
            ],
            "rules": [
                {
                    "id": f"r-{m}",
                    "name": f"{m} high",
                    "metric": m,
                    "above": 1000.0,
                    "severity": "critical",
                    "fault_class": f"{m}_high",
                }
                for m in METRICS[:rules]
            ],
            "channels": [{"id": "hook", "type": "webhook", "url": hook}],
            "oncall": {"people": [{"id": "tech", "name": "Tech", "contacts": ["hook"]}]},
            "escalation": {"chains": [{"id": "all", "steps": [{"notify": {"person": "tech"}}]}]},
            "default_rules": False,  # exactly --rules rules per device
        }
    )


class _Receiver:
    """Records when each ticket's page arrived."""

    def __init__(self) -> None:
        self.arrived: dict[int, float] = {}
        self.event = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                t = time.perf_counter()
                tid = json.loads(body)["ticket"]["id"]
                outer.arrived.setdefault(int(tid), t)
                outer.event.set()
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def throughput(engine: AlertEngine, devices: Sequence[str], rules: int, samples: int) -> float:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    per_poll = rules + 2  # the rule metrics plus a metric no rule watches and device_up
    metrics = [*METRICS[:rules], "frequency", "device_up"]
    polls = samples // per_poll
    batches: list[list[Reading]] = []
    for p in range(polls):
        dev = devices[p % len(devices)]
        t = t0 + timedelta(seconds=p // len(devices))
        batches.append(
            [Reading(t, dev, m, 1.0 if m == "device_up" else 50.0 + p % 7) for m in metrics]
        )
    now = t0 + timedelta(seconds=polls // len(devices) + 1)
    start = time.perf_counter()
    for b in batches:
        engine.evaluate(b, now)
    elapsed = time.perf_counter() - start
    return polls * per_poll / elapsed


def latency(
    engine: AlertEngine, pager: Pager, receiver: _Receiver, devices: Sequence[str], trials: int
) -> tuple[list[float], list[float]]:
    loop = asyncio.new_event_loop()
    task = loop.create_task(pager.run(1.0))

    def serve() -> None:
        asyncio.set_event_loop(loop)
        with contextlib.suppress(asyncio.CancelledError):
            loop.run_until_complete(task)

    runner = threading.Thread(target=serve, daemon=True)
    runner.start()
    time.sleep(0.3)  # the pager's loop is up
    to_ticket: list[float] = []
    to_page: list[float] = []
    for i in range(trials):
        dev = devices[i % len(devices)]
        now = datetime.now(UTC)
        receiver.event.clear()
        start = time.perf_counter()
        transitions = engine.evaluate([Reading(now, dev, METRICS[0], 5000.0)], now)
        committed = time.perf_counter()
        [tr] = [t for t in transitions if t.ticket is not None]
        assert tr.ticket is not None
        pager.kick()
        deadline = time.monotonic() + 10
        while tr.ticket.id not in receiver.arrived and time.monotonic() < deadline:
            receiver.event.wait(0.05)
            receiver.event.clear()
        to_ticket.append(committed - start)
        to_page.append(receiver.arrived.get(tr.ticket.id, float("inf")) - start)
    loop.call_soon_threadsafe(task.cancel)
    runner.join()
    loop.close()
    return to_ticket, to_page


def pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))]


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--devices", type=int, default=500)
    ap.add_argument("--rules", type=int, default=4, help=f"rules per device (max {len(METRICS)})")
    ap.add_argument("--samples", type=int, default=400_000)
    ap.add_argument("--trials", type=int, default=200)
    ap.add_argument("--db", default=None, help="ticket database URL (default: SQLite in a tmp dir)")
    args = ap.parse_args(argv)

    receiver = _Receiver()
    config = site(args.devices, args.rules, receiver.url)
    devices = [d.id for d in config.devices]
    with tempfile.TemporaryDirectory() as tmp:
        url = args.db or f"sqlite:///{tmp}/tickets.db"
        tickets = TicketStore(url)
        engine = AlertEngine(config, tickets)
        instances = args.devices * args.rules
        rate = throughput(engine, devices, args.rules, args.samples)
        print(
            f"evaluation: {rate:,.0f} samples/s ({args.devices} devices, {instances} rule "
            f"instances, {args.samples:,} samples, steady state)"
        )
        pager = Pager(config, tickets)
        to_ticket, to_page = latency(engine, pager, receiver, devices, args.trials)
        for name, xs in (
            ("sample -> ticket committed", to_ticket),
            ("sample -> page received", to_page),
        ):
            ms = [x * 1000 for x in xs]
            print(
                f"{name}: p50 {pct(ms, 0.5):.1f} ms, p99 {pct(ms, 0.99):.1f} ms, "
                f"max {max(ms):.1f} ms, mean {statistics.fmean(ms):.1f} ms ({len(ms)} trials)"
            )
        tickets.close()
    receiver.server.shutdown()


if __name__ == "__main__":
    main()
