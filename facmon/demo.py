"""``facmon demo``: a simulated building and the whole pipeline in one process.

Real Modbus TCP servers on loopback stand in for the devices, so the collector, the durable
writer, the embedded store, the alert engine and the API run exactly as they do on a site.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

from collector.transport import describe_source
from config import ConfigError, SiteConfig, load_config_text
from facmon.checks import CHECKS
from facmon.progress import Progress
from facmon.runtime import Pipeline, api_tokens, bind_socket, open_store
from simulator import SimulatedBuilding, with_ports
from store import Reading, Store

log = logging.getLogger("facmon.demo")

HISTORY_STEP = timedelta(minutes=5)
WRITE_CHUNK = 50_000
FAULT_CODE = 31  # "door lock circuit open" in the simulator's fault table
FAULT_DURATION = timedelta(minutes=4)


def demo_config(data_dir: Path) -> SiteConfig:
    text = resources.files("simulator").joinpath("demo_site.yaml").read_text(encoding="utf-8")
    cfg = load_config_text(text, filename="demo_site.yaml", base_dir=data_dir, checks=CHECKS)
    return cfg.model_copy(update={"data_dir": data_dir})


def backfill(
    sim: SimulatedBuilding,
    store: Store,
    start: datetime,
    end: datetime,
    label: str,
    write_after: datetime | None = None,
) -> int:
    """Run the simulator from ``start`` to ``end`` and write what it produced after
    ``write_after`` straight into the store, with a progress line.

    The simulator's counters are exact integrals from ``start``, so replaying from the same
    start after a restart brings them back to where the stored history left them.
    """
    days = (end - start).total_seconds() / 86400
    bar = Progress(label, days, "days")
    n = 0
    pending: list[Reading] = []
    for batch in sim.history(start, end, HISTORY_STEP):
        if batch and (write_after is None or batch[0].time > write_after):
            pending.extend(batch)
        if len(pending) >= WRITE_CHUNK:  # one store write per step would cost far more
            store.write(pending)
            n += len(pending)
            pending = []
        if batch:
            bar.update((batch[-1].time - start).total_seconds() / 86400, f"{n:,} samples")
    if pending:
        store.write(pending)
        n += len(pending)
    bar.finish(f"{n:,} samples written")
    return n


def _load_state(path: Path) -> dict[str, Any] | None:
    try:
        state: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        datetime.fromisoformat(state["history_start"])
        int(state["seed"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return state


async def _inject_fault_later(sim: SimulatedBuilding, device: str, after: float) -> None:
    await asyncio.sleep(after)
    log.warning("simulator: injecting fault %d on elevator %s", FAULT_CODE, device)
    sim.inject_fault(device, FAULT_CODE, FAULT_DURATION)


def run_demo(
    data_dir: Path,
    host: str = "127.0.0.1",
    port: int = 8000,
    history_days: int = 35,
    fault_after: float = 60.0,
    seed: int = 1,
) -> int:
    data_dir = data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    try:
        cfg = demo_config(data_dir)
    except ConfigError as e:  # a packaging error, not a user error
        print(e)
        return 2
    sock = bind_socket(host, port)
    tokens, generated = api_tokens(cfg)

    async def main() -> None:
        stop = asyncio.Event()
        from facmon.cli import _install_stop

        _install_stop(stop)
        state_file = data_dir / "demo-state.json"
        state = _load_state(state_file)
        store = open_store(cfg)
        stored = store.latest(metrics=["device_up"])
        now = datetime.now(UTC)
        if state is None or not stored:
            state = {"history_start": (now - timedelta(days=history_days)).isoformat(),
                     "seed": seed}
            sim = SimulatedBuilding(cfg, seed=seed)
            start = datetime.fromisoformat(state["history_start"])
            label = f"Back-filling {history_days} days of history"
            await asyncio.to_thread(backfill, sim, store, start, now, label)
            state_file.write_text(json.dumps(state), encoding="utf-8")
        else:
            # Same seed, same start: the simulator lands exactly where the stored data ends.
            last = max(r.time for r in stored)
            sim = SimulatedBuilding(cfg, seed=int(state["seed"]))
            start = datetime.fromisoformat(state["history_start"])
            label = f"History found in {data_dir} - skipping back-fill; catching up"
            await asyncio.to_thread(backfill, sim, store, start, now, label, last)
        ports = await sim.start()
        live = with_ports(cfg, ports)
        pipeline = Pipeline.build(live, store=store)
        api = f"http://{host}:{sock.getsockname()[1]}"
        token = generated or os.environ.get("FACMON_API_TOKEN", "<your FACMON_API_TOKEN>")
        elevators = [d.id for d in live.devices if d.kind == "elevator"]
        print()
        print(f"facmon demo: {live.site.name} - {len(live.devices)} simulated devices")
        for d in live.devices:
            src = d.source
            print(f"  {d.id:<18} {d.kind:<12} {describe_source(src)}")
        print(f"  API      {api}   (interactive docs: {api}/docs)")
        print(f"  Token    {token}")
        print(f"  Try      curl -H 'Authorization: Bearer {token}' {api}/api/v1/readings/latest")
        print(f"  Data     {data_dir}")
        if elevators and fault_after >= 0:
            print(f"  In {fault_after:.0f} s the simulator injects a fault on {elevators[0]}: "
                  f"watch {api}/api/v1/tickets")
        print("Press Ctrl-C to stop.")
        extra = [asyncio.create_task(sim.run(), name="simulator")]
        if elevators and fault_after >= 0:
            extra.append(asyncio.create_task(_inject_fault_later(sim, elevators[0], fault_after)))
        try:
            await pipeline.serve(sock, tokens, stop, extra=extra)
        finally:
            await sim.stop()
        print("facmon demo stopped.")

    asyncio.run(main())
    return 0
