"""The edge and central roles of a multi-building deployment (issue 4, item 5).

* ``uplink`` (in a building's site file): ``facmon run`` also publishes every sample it stores to
  a central MQTT broker, buffered on disk while the broker is unreachable.
* ``ingest`` (in the central site file): ``facmon ingest`` consumes those batches through an
  MQTT shared subscription, so several worker processes split the load, and stores them.

Kept beside ``config.models`` (which imports it). The broker connection is the ``mqtt``
block's (:class:`config.broker.BrokerSettings`): passwords through ``${ENV}`` interpolation, the
same TLS settings.
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator

from config.broker import BrokerSettings
from config.durations import Duration

_IDENT = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
_PREFIX_FIELD = re.compile(r"\{([^{}]*)\}")
_PREFIX_NAMES = frozenset({"site", "building"})
DEFAULT_TOPIC_PREFIX = "facmon/{site}/{building}"
"""Where an edge publishes; the central default filter ``facmon/+/+/#`` matches it."""


class UplinkSettings(BrokerSettings):
    """The edge role: publish every stored sample to the central broker."""

    client_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        description="Client id of the publisher; default facmon-uplink-<site id>. Must differ "
        "from mqtt.client_id and from every other edge's",
    )
    topic_prefix: str = Field(
        default=DEFAULT_TOPIC_PREFIX,
        description="Topic of the batches without the last level; {site} and {building} are "
        "the site id and the building of the samples. Batches go to <prefix>/readings",
    )
    qos: Literal[1, 2] = Field(
        default=1,
        description="1: at least once (duplicates are stored once, the central store is "
        "idempotent), 2: exactly once on the wire, slower. A batch leaves the disk buffer "
        "only when the broker acknowledged it",
    )
    batch_size: int = Field(
        default=500,
        ge=1,
        le=20_000,
        description="Samples per message at most (about 60 bytes each as JSON for meter "
        "polls); one building per message",
    )
    max_inflight: int = Field(
        default=20,
        ge=1,
        le=1000,
        description="Messages published and not yet acknowledged by the broker",
    )
    buffer_path: Path | None = Field(
        default=None,
        description="SQLite file of the on-disk buffer; default <data_dir>/uplink.db",
    )
    max_buffered: int = Field(
        default=5_000_000,
        ge=1000,
        description="Bound on samples buffered while the broker is unreachable (about 55 "
        "bytes of disk each); past it the oldest are dropped, counted and logged",
    )

    @field_validator("topic_prefix")
    @classmethod
    def _valid_prefix(cls, v: str) -> str:
        unknown = [n for n in _PREFIX_FIELD.findall(v) if n not in _PREFIX_NAMES]
        if unknown:
            raise ValueError(f"unknown placeholder {{{unknown[0]}}}; use {{site}} and {{building}}")
        if "+" in v or "#" in v or v.startswith("$") or v.endswith("/") or not v:
            raise ValueError("must be a topic without wildcards, not starting with '$'")
        return v


class IngestSettings(BrokerSettings):
    """The central role: ``facmon ingest`` workers consuming the edges' batches."""

    client_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=55,
        description="Client id; each worker appends -<worker> (facmon ingest --worker); "
        "default facmon-ingest-<site id>. Must stay the same across restarts: the persistent "
        "session holds the messages the broker assigned to a worker while it was away",
    )
    group: str = Field(
        default="facmon-ingest",
        pattern=_IDENT,
        description="Shared subscription group: workers in one group split the messages "
        "($share/<group>/<topic>)",
    )
    topic: str = Field(
        default="facmon/+/+/#",
        description="Topic filter of the edges' batches (site and building are the 2nd and "
        "3rd level with the default uplink topic_prefix)",
    )
    qos: Literal[1, 2] = Field(
        default=1, description="Subscription QoS; acknowledged only once the samples are on disk"
    )
    sites: list[Annotated[str, Field(pattern=_IDENT)]] = Field(
        default_factory=list,
        description="Site ids accepted; batches of other sites are counted and dropped. "
        "Empty: every site",
    )
    device_ids: Literal["as_sent", "site_prefixed"] = Field(
        default="as_sent",
        description="as_sent: device ids are stored as the edge sent them (they must be unique "
        "across sites); site_prefixed: stored as <site>.<device>",
    )
    session_expiry: Duration = Field(
        default=timedelta(days=1),
        description="How long the broker keeps a worker's session, and the messages assigned "
        "to it, while the worker is away (MQTT 5; 3.1.1 brokers use their own setting)",
    )
    max_pending: int = Field(
        default=1000,
        ge=1,
        le=65535,
        description="Messages received and not yet on disk per worker; past it the worker "
        "stops reading from the broker (back-pressure)",
    )

    @field_validator("topic")
    @classmethod
    def _valid_filter(cls, v: str) -> str:
        # Imported here: config.models imports this module (defined by validation time).
        from config.models import topic_filter_problem

        if v.startswith("$"):
            raise ValueError("topic filter must not start with '$' (facmon adds $share/<group>/)")
        why = topic_filter_problem(v)
        if why:
            raise ValueError(f"topic filter {why}")
        return v
