"""``facmon ingest``: one central ingest worker process (collector.ingest) and its durable path.

shared subscription -> IngestWorker -> DurableWriter (outbox) -> store. No alert engine and no
API: alerts run at the edges, where the devices and their rules are configured and where they
keep working through a WAN outage; the API and reports run in a ``facmon run`` on the central
site file, reading the same store (InfluxDB).

Each worker keeps its files under ``<data_dir>/ingest-<worker>/`` (its outbox and, with the
embedded backend, its own DuckDB file, which one process at a time can open): several workers on
one host do not share a file. Explicit ``storage.outbox.path``/``storage.embedded.path`` are
used as given, so set them only for a single worker.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from pathlib import Path

from collector.ingest import IngestWorker
from config.models import SiteConfig
from facmon.logs import redact, secret_values
from store.base import Store
from store.outbox import DurableWriter

log = logging.getLogger("facmon")

WORKER_ID = re.compile(r"^[A-Za-z0-9_-]{1,8}$")
_STATS_EVERY_S = 60.0


def worker_config(config: SiteConfig, worker: str) -> SiteConfig:
    """``config`` with this worker's own data directory (see the module docstring)."""
    if not WORKER_ID.match(worker):
        raise ValueError(f"worker id {worker!r}: 1-8 letters, digits, '_' or '-'")
    return config.model_copy(update={"data_dir": config.data_dir / f"ingest-{worker}"})


def run_ingest(
    config: SiteConfig,
    worker: str,
    stop: threading.Event,
    status_file: Path | None = None,
    status_every: float = 1.0,
) -> int:
    """Consume and store until ``stop`` is set; then store what was received, flush the outbox
    (up to 10 s; the rest stays on disk for the next start) and close. Returns an exit status."""
    if config.ingest is None:
        log.error("the site config has no 'ingest' block: nothing to consume")
        return 2
    cfg = worker_config(config, worker)
    redact(secret_values(cfg))
    cfg.outbox_path.parent.mkdir(parents=True, exist_ok=True)
    store = open_store(cfg)
    writer = DurableWriter(store, cfg.outbox_path, cfg.storage.outbox)
    writer.start()
    consumer = IngestWorker(cfg, writer.put, worker=worker)
    consumer.start()
    log.info(
        "ingest worker %s: %s into %s (outbox %s)",
        worker,
        consumer.topic,
        cfg.storage.backend,
        cfg.outbox_path,
    )
    since_log = 0.0
    try:
        while not stop.wait(status_every):
            since_log += status_every
            if status_file is not None:
                _write_status(status_file, consumer, writer)
            if since_log >= _STATS_EVERY_S:
                since_log = 0.0
                s = consumer.stats
                log.info(
                    "ingest worker %s: %d messages, %d samples, %d bad, outbox %d",
                    worker,
                    s.stored,
                    s.samples,
                    sum(s.bad.values()),
                    writer.stats.depth,
                    extra={"received": s.received, "samples": s.samples},
                )
    finally:
        consumer.stop()
        flushed = writer.close()
        store.close()
        if status_file is not None:
            _write_status(status_file, consumer, writer)
        s = consumer.stats
        log.info(
            "ingest worker %s stopped: %d messages, %d samples this run%s",
            worker,
            s.stored,
            s.samples,
            "" if flushed else " (the rest stays in the outbox for the next start)",
        )
    return 0


def open_store(config: SiteConfig) -> Store:
    """The configured store, as ``facmon.runtime.open_store`` opens it, without importing the
    API and the alert engine (seconds at every worker start on a small machine)."""
    if config.storage.backend == "influxdb":
        from store.influx import open_influx

        return open_influx(config)
    from store.embedded import EmbeddedStore

    config.embedded_path.parent.mkdir(parents=True, exist_ok=True)
    return EmbeddedStore(config.embedded_path)


def _write_status(path: Path, consumer: IngestWorker, writer: DurableWriter) -> None:
    w = writer.stats
    data = {
        **consumer.stats.as_dict(),
        "store": {"written": w.written, "outbox_depth": w.depth, "up": w.store_up},
    }
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data), encoding="utf-8")
    tmp.replace(path)  # readers never see half a file
