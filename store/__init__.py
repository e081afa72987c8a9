"""Time-series storage of readings: the record, the store interface and its backends.

A top-level package (beside collector/alerts/api) because every stage depends on it and it
depends on none of them.

The embedded store and the durable write path are loaded on first use: collectors and the alert
engine import ``store.reading`` and should not pay for DuckDB, Arrow and SQLite setup.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from store.base import (
    Aggregate,
    RejectedPointsError,
    RetryableStoreError,
    Store,
    StoreError,
    Windows,
    WindowValue,
)
from store.counters import CounterWindow
from store.reading import Quality, Reading
from store.states import StateWindow

if TYPE_CHECKING:
    from store.columnar import ReadingBatch
    from store.embedded import EmbeddedStore
    from store.outbox import DurableWriter, Outbox, WriterStats

_LAZY = {
    "DurableWriter": "store.outbox",
    "EmbeddedStore": "store.embedded",
    "Outbox": "store.outbox",
    "ReadingBatch": "store.columnar",
    "WriterStats": "store.outbox",
}

__all__ = [
    "Aggregate",
    "CounterWindow",
    "DurableWriter",
    "EmbeddedStore",
    "Outbox",
    "Quality",
    "Reading",
    "ReadingBatch",
    "RejectedPointsError",
    "RetryableStoreError",
    "StateWindow",
    "Store",
    "StoreError",
    "WindowValue",
    "Windows",
    "WriterStats",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'store' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
