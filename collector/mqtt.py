"""MQTT ingestion: subscriptions from the site config -> Readings -> the durable sink -> ack.

Loss-free by construction for QoS 1 (and for QoS 2 until the broker's PUBREL, see below):

* the client id is stable and the session persistent (MQTT 5: clean start off plus a session
  expiry; 3.1.1: clean session off), so the broker queues messages while facmon is away;
* acknowledgements are manual (paho's ``manual_ack``): a message is acknowledged only after the
  sink (``Pipeline.ingest`` -> ``DurableWriter.put``) returned, i.e. its readings are on disk.
  A crash between receive and store leaves the message unacknowledged and the broker delivers
  it again; stores are idempotent on ``Reading.key`` so a re-delivery with a timestamp from the
  payload is stored once;
* every (re)connect subscribes to every configured topic again, so a session created before a
  topic was added to the config picks the topic up;
* received messages wait in a bounded queue for the writer thread. When it is full the network
  thread blocks, the socket is no longer read, and the broker holds the rest (back-pressure)
  instead of facmon buffering without bound or dropping.

The writer thread takes whatever is queued (up to ``_BATCH_MESSAGES`` messages) and hands it to
the sink in one call, so one fsync covers many messages.

Bad payloads (malformed JSON or line protocol, missing fields, non-numeric values, timestamps
outside the skew limits) are counted per topic and reason, logged for the first one of a topic
and then at most once a minute per topic, dropped, and still acknowledged: a poison message
must not come back forever. Messages for devices the config does not declare are counted per
device id and logged once per device; no device is created for them.

QoS 2 caveat: paho answers PUBLISH with PUBREC at once and only the final PUBCOMP waits for the
store. After a PUBREC the broker no longer holds the payload, so a crash between PUBREC and
store loses the message; use QoS 1 (with payload timestamps) where nothing may be lost.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import queue
import re
import ssl
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Any
from zoneinfo import ZoneInfo

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from collector.tags import device_tags
from config.models import (
    MQTT_TEMPLATE_FIELD,
    Device,
    MqttField,
    MqttSettings,
    MqttSource,
    MqttSubscription,
    SiteConfig,
)
from store.reading import EPOCH, Quality, Reading

__all__ = [
    "LinePoint",
    "MessageMapper",
    "MqttCollector",
    "MqttStats",
    "PayloadError",
    "UnknownDeviceError",
    "parse_line_protocol",
    "topic_matches",
]

log = logging.getLogger(__name__)

_BATCH_MESSAGES = 1000  # messages per sink call: one fsync for all of them
# After the first message of a batch, wait this long for more. Measured at QoS 1 with ~100-byte
# JSON: without it a busy stream is cut into batches of a few messages, and per-batch costs (an
# fsync, a wake-up of the network thread to send the acks) held facmon to ~35% of a bare paho
# subscriber's rate; with it, the sink sees batches of hundreds.
_BATCH_LINGER_S = 0.01
_BAD_LOG_EVERY = timedelta(minutes=1)
# Wildcard subscriptions can bring any number of topics: past this many, bad-payload counts
# and log rate limits share one bucket so a misbehaving fleet cannot grow memory.
_MAX_TRACKED_TOPICS = 1000
_OTHER_TOPICS = "<other topics>"
_NUMBER = re.compile(r"^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$")
_INTEGER = re.compile(r"^[+-]?\d+$")
_LINE_TRUE = frozenset({"t", "T", "true", "True", "TRUE"})
_LINE_FALSE = frozenset({"f", "F", "false", "False", "FALSE"})
_PRECISION_NS = {"ns": 1, "us": 1_000, "ms": 1_000_000, "s": 1_000_000_000}


def _utcnow() -> datetime:
    return datetime.now(UTC)


class PayloadError(ValueError):
    """A message that cannot become readings; ``reason`` is the counter it is filed under."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


class UnknownDeviceError(Exception):
    """A message names a device the site config does not declare."""

    def __init__(self, device: str) -> None:
        super().__init__(device)
        self.device = device


# --------------------------------------------------------------------------------------------
# Topics


def topic_matches(topic_filter: str, topic: str) -> bool:
    """MQTT filter matching: ``+`` one level, ``#`` the rest (including the parent level)."""
    f = topic_filter.split("/")
    t = topic.split("/")
    # Wildcards at the first level do not match topics starting with '$' (MQTT 4.7.2).
    if topic.startswith("$") and f[0] in ("+", "#"):
        return False
    for i, level in enumerate(f):
        if level == "#":
            return True
        if i >= len(t):
            return False
        if level != "+" and level != t[i]:
            return False
    return len(f) == len(t)


# --------------------------------------------------------------------------------------------
# InfluxDB line protocol


@dataclass(frozen=True, slots=True)
class LinePoint:
    measurement: str
    tags: dict[str, str]
    fields: dict[str, float]
    timestamp: int | None  # in the subscription's line_precision


class _LineScanner:
    def __init__(self, line: str) -> None:
        self.s = line
        self.i = 0

    def fail(self, what: str) -> PayloadError:
        return PayloadError("malformed_line", f"{what} at column {self.i + 1}: {self.s[:120]!r}")

    def token(self, stops: str, escapable: str) -> str:
        out: list[str] = []
        s = self.s
        while self.i < len(s):
            c = s[self.i]
            if c == "\\" and self.i + 1 < len(s) and s[self.i + 1] in escapable:
                out.append(s[self.i + 1])
                self.i += 2
                continue
            if c in stops:
                break
            out.append(c)
            self.i += 1
        return "".join(out)

    def peek(self) -> str:
        return self.s[self.i] if self.i < len(self.s) else ""

    def expect(self, c: str, what: str) -> None:
        if self.peek() != c:
            raise self.fail(f"expected {what}")
        self.i += 1


def _line_value(raw: str, scanner: _LineScanner) -> float:
    if raw.endswith(("i", "u")) and _INTEGER.match(raw[:-1]):
        if raw.endswith("u") and raw.startswith("-"):
            raise scanner.fail("negative unsigned integer")
        return float(int(raw[:-1]))
    if raw in _LINE_TRUE:
        return 1.0
    if raw in _LINE_FALSE:
        return 0.0
    if _NUMBER.match(raw):
        return float(raw)
    raise scanner.fail(f"bad field value {raw!r}")


def _parse_line(line: str) -> LinePoint:
    sc = _LineScanner(line)
    measurement = sc.token(", ", ", ")
    if not measurement:
        raise sc.fail("missing measurement")
    tags: dict[str, str] = {}
    while sc.peek() == ",":
        sc.i += 1
        key = sc.token("=, ", ",= ")
        sc.expect("=", "'=' after tag key")
        value = sc.token(", ", ",= ")
        if not key or not value:
            raise sc.fail("empty tag key or value")
        tags[key] = value
    sc.expect(" ", "a space before the fields")
    fields: dict[str, float] = {}
    while True:
        key = sc.token("=, ", ",= ")
        if not key:
            raise sc.fail("empty field key")
        sc.expect("=", "'=' after field key")
        if sc.peek() == '"':
            sc.i += 1
            sc.token('"', '"\\')
            sc.expect('"', "closing quote")
            raise PayloadError("non_numeric", f"field {key!r} is a string: {line[:120]!r}")
        raw = sc.token(", ", "")
        if not raw:
            raise sc.fail(f"field {key!r} has no value")
        fields[key] = _line_value(raw, sc)
        if sc.peek() != ",":
            break
        sc.i += 1
    timestamp: int | None = None
    if sc.peek() == " ":
        sc.i += 1
        raw = sc.s[sc.i :]
        if not _INTEGER.match(raw):
            raise sc.fail(f"bad timestamp {raw!r}")
        timestamp = int(raw)
        sc.i = len(sc.s)
    if sc.i != len(sc.s):
        raise sc.fail("unexpected text after the fields")
    return LinePoint(measurement, tags, fields, timestamp)


def parse_line_protocol(text: str) -> list[LinePoint]:
    """Strict parser of InfluxDB line protocol with numeric and boolean fields.

    Raises :class:`PayloadError` (``malformed_line``, or ``non_numeric`` for string fields) for
    the first bad line: a message is stored whole or not at all. Blank lines and ``#`` comment
    lines are skipped; booleans read as 1/0.
    """
    points = [
        _parse_line(line)
        for raw in text.split("\n")
        if (line := raw.rstrip("\r")) and not line.startswith("#")
    ]
    if not points:
        raise PayloadError("malformed_line", "no line in the payload")
    return points


# --------------------------------------------------------------------------------------------
# Mapping messages to readings


def _path_get(data: Any, path: str) -> Any:
    node = data
    for step in path.split("."):
        if isinstance(node, dict) and step in node:
            node = node[step]
        elif isinstance(node, list) and step.isdigit() and int(step) < len(node):
            node = node[int(step)]
        else:
            raise PayloadError("missing_field", f"no field {path!r} in the payload")
    return node


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool):
        return 1.0 if value else 0.0  # states such as leak: true
    if isinstance(value, int | float) and math.isfinite(value):
        return float(value)
    raise PayloadError("non_numeric", f"{what} is {value!r}, not a number")


@dataclass(frozen=True)
class _Route:
    sub: MqttSubscription
    template: tuple[str | None, ...]  # a level's bound name, or None for a fixed level
    fields: tuple[tuple[str, str, str | None], ...]  # metric, path, unit

    @classmethod
    def of(cls, sub: MqttSubscription) -> _Route:
        names: list[str | None] = []
        for level in (sub.template or "").split("/") if sub.template else ():
            m = MQTT_TEMPLATE_FIELD.match(level)
            names.append(m.group(1) if m else None)
        fields = tuple(
            (metric, f.path, f.unit) if isinstance(f, MqttField) else (metric, f, None)
            for metric, f in sub.fields.items()
        )
        return cls(sub, tuple(names), fields)

    def bind(self, topic: str) -> dict[str, str]:
        if not self.template:
            return {}
        levels = topic.split("/")
        if len(levels) < len(self.template) or (
            self.sub.topic.split("/")[-1] != "#" and len(levels) != len(self.template)
        ):
            raise PayloadError(
                "topic_mismatch", f"topic {topic!r} does not fit template {self.sub.template!r}"
            )
        fixed = (self.sub.template or "").split("/")
        out: dict[str, str] = {}
        for i, name in enumerate(self.template):
            if name is None:
                if levels[i] != fixed[i]:
                    raise PayloadError(
                        "topic_mismatch",
                        f"topic {topic!r} does not fit template {self.sub.template!r}",
                    )
            else:
                out[name] = levels[i]
        return out

    def unit(self, metric: str, own: str | None = None) -> str:
        if own is not None:
            return own
        return self.sub.units.get(metric, self.sub.unit)


class MessageMapper:
    """Turns one MQTT message into Readings; pure apart from the config it was built from."""

    def __init__(self, config: SiteConfig) -> None:
        if config.mqtt is None:
            raise ValueError("the site config has no 'mqtt' block")
        self.settings: MqttSettings = config.mqtt
        self._zone = ZoneInfo(config.site.timezone)
        self._routes = [_Route.of(s) for s in self.settings.subscriptions]
        self._devices: dict[str, tuple[Device, Mapping[str, str]]] = {
            d.id: (d, MappingProxyType(device_tags(config.site.id, d))) for d in config.devices
        }

    def route(self, topic: str) -> _Route | None:
        for r in self._routes:
            if topic_matches(r.sub.topic, topic):
                return r
        return None

    def readings(self, topic: str, payload: bytes | bytearray, received: datetime) -> list[Reading]:
        """Readings of one message. Raises PayloadError or UnknownDeviceError."""
        route = self.route(topic)
        if route is None:
            raise PayloadError("no_subscription", f"no subscription matches topic {topic!r}")
        bound = route.bind(topic)
        try:
            text = payload.decode("utf-8")
        except UnicodeDecodeError:
            raise PayloadError("not_utf8", "payload is not UTF-8 text") from None
        sub = route.sub
        if sub.format == "json":
            return self._json(route, bound, topic, text, received)
        if sub.format == "number":
            return self._plain(route, bound, topic, text, received)
        return self._lines(route, bound, topic, text, received)

    # -- formats -------------------------------------------------------------------------------

    def _json(
        self, route: _Route, bound: dict[str, str], topic: str, text: str, received: datetime
    ) -> list[Reading]:
        sub = route.sub
        try:
            data = json.loads(text)
        except ValueError as e:
            raise PayloadError("malformed_json", f"not JSON: {e}") from None
        device_id = bound.get("device")
        if device_id is None and sub.device_field is not None:
            raw = _path_get(data, sub.device_field)
            if not isinstance(raw, str | int) or isinstance(raw, bool) or raw == "":
                raise PayloadError("missing_field", f"device id {raw!r} is not text")
            device_id = str(raw)
        device_id = device_id or sub.device
        assert device_id is not None  # the model requires a source of the device id
        if sub.timestamp_field is None:
            t = received
        else:
            t = self._timestamp(_path_get(data, sub.timestamp_field), sub, received)
        values = [
            (metric, _number(_path_get(data, path), path), route.unit(metric, unit))
            for metric, path, unit in route.fields
        ]
        device, tags = self._device(device_id, topic)
        return [Reading(t, device.id, m, v, u, Quality.GOOD, tags) for m, v, u in values]

    def _plain(
        self, route: _Route, bound: dict[str, str], topic: str, text: str, received: datetime
    ) -> list[Reading]:
        sub = route.sub
        raw = text.strip()
        if not _NUMBER.match(raw):
            raise PayloadError("non_numeric", f"payload {raw[:40]!r} is not a number")
        value = float(raw)
        if not math.isfinite(value):
            raise PayloadError("non_numeric", f"payload {raw[:40]!r} is not a finite number")
        metric = bound.get("metric") or sub.metric
        device_id = bound.get("device") or sub.device
        assert metric is not None and device_id is not None  # required by the model
        device, tags = self._device(device_id, topic)
        return [Reading(received, device.id, metric, value, route.unit(metric), Quality.GOOD, tags)]

    def _lines(
        self, route: _Route, bound: dict[str, str], topic: str, text: str, received: datetime
    ) -> list[Reading]:
        sub = route.sub
        out: list[Reading] = []
        for p in parse_line_protocol(text):
            device_id = p.tags.get(sub.line_device_tag) or bound.get("device") or sub.device
            if device_id is None:
                raise PayloadError(
                    "no_device", f"line {p.measurement!r} has no {sub.line_device_tag!r} tag"
                )
            if p.timestamp is None:
                t = received
            else:
                ns = p.timestamp * _PRECISION_NS[sub.line_precision]
                t = self._checked(EPOCH + timedelta(microseconds=ns // 1000), sub, received)
            if sub.line_metric == "measurement":
                if len(p.fields) != 1:
                    raise PayloadError(
                        "malformed_line",
                        f"line {p.measurement!r} has {len(p.fields)} fields; "
                        "line_metric 'measurement' needs exactly one",
                    )
                metrics = [(p.measurement, next(iter(p.fields.values())))]
            else:
                metrics = list(p.fields.items())
            device, tags = self._device(device_id, topic)
            out.extend(
                Reading(t, device.id, m, v, route.unit(m), Quality.GOOD, tags) for m, v in metrics
            )
        return out

    # -- helpers -------------------------------------------------------------------------------

    def _device(self, device_id: str, topic: str) -> tuple[Device, Mapping[str, str]]:
        found = self._devices.get(device_id)
        if found is None:
            raise UnknownDeviceError(device_id)
        device = found[0]
        src = device.source
        if not isinstance(src, MqttSource):
            raise PayloadError(
                "not_an_mqtt_device", f"device {device_id!r} is read over {src.type}, not MQTT"
            )
        if src.topic is not None and not topic_matches(src.topic, topic):
            raise PayloadError(
                "wrong_topic_for_device",
                f"device {device_id!r} only publishes on {src.topic!r}, not {topic!r}",
            )
        return found

    def _timestamp(self, raw: Any, sub: MqttSubscription, received: datetime) -> datetime:
        if sub.timestamp_unit == "iso8601":
            if not isinstance(raw, str):
                raise PayloadError("bad_timestamp", f"timestamp {raw!r} is not ISO 8601 text")
            try:
                t = datetime.fromisoformat(raw)
            except ValueError:
                raise PayloadError("bad_timestamp", f"timestamp {raw!r} is not ISO 8601") from None
            if t.tzinfo is None:
                t = t.replace(tzinfo=self._zone)
        else:
            if isinstance(raw, bool) or not isinstance(raw, int | float):
                raise PayloadError("bad_timestamp", f"timestamp {raw!r} is not a number")
            if not math.isfinite(raw) or abs(raw) > 1e15:
                raise PayloadError("bad_timestamp", f"timestamp {raw!r} is out of range")
            if isinstance(raw, int):
                us = raw * (1_000_000 if sub.timestamp_unit == "s" else 1_000)
            else:
                us = round(raw * (1e6 if sub.timestamp_unit == "s" else 1e3))
            t = EPOCH + timedelta(microseconds=us)
        return self._checked(t, sub, received)

    @staticmethod
    def _checked(t: datetime, sub: MqttSubscription, received: datetime) -> datetime:
        if t > received + sub.max_future:
            raise PayloadError(
                "timestamp_in_future",
                f"timestamp {t.isoformat()} is more than {sub.max_future} ahead of "
                f"{received.isoformat()}",
            )
        if t < received - sub.max_age:
            raise PayloadError(
                "timestamp_too_old",
                f"timestamp {t.isoformat()} is more than {sub.max_age} before "
                f"{received.isoformat()}",
            )
        return t


# --------------------------------------------------------------------------------------------
# The collector


@dataclass(frozen=True)
class MqttStats:
    connected: bool
    connects: int  # successful connections, the first one included
    received: int  # messages received
    stored: int  # messages whose readings reached the sink (re-deliveries included)
    readings: int  # readings handed to the sink
    acked: int  # QoS 1/2 acknowledgements sent
    bad: dict[str, dict[str, int]]  # topic -> reason -> messages dropped
    unknown_devices: dict[str, int]  # device id -> messages dropped
    pending: int  # messages received and not yet through the sink (queued or being written)
    sink_errors: int
    last_error: str | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "connected": self.connected,
            "connects": self.connects,
            "received": self.received,
            "stored": self.stored,
            "readings": self.readings,
            "acked": self.acked,
            "bad": {t: dict(r) for t, r in self.bad.items()},
            "bad_total": sum(sum(r.values()) for r in self.bad.values()),
            "unknown_devices": dict(self.unknown_devices),
            "pending": self.pending,
            "sink_errors": self.sink_errors,
            "last_error": self.last_error,
        }


@dataclass
class _Item:
    readings: list[Reading]
    mid: int
    qos: int
    generation: int


@dataclass
class _TopicLog:
    next_log: datetime
    suppressed: int = 0


@dataclass
class _Counters:
    connects: int = 0
    received: int = 0
    stored: int = 0
    readings: int = 0
    acked: int = 0
    sink_errors: int = 0
    bad: dict[str, dict[str, int]] = field(default_factory=dict)
    unknown: dict[str, int] = field(default_factory=dict)
    last_error: str | None = None


class MqttCollector:
    """Subscribes to the config's MQTT topics and feeds their readings to ``sink``.

    ``sink`` is called from the collector's writer thread with the readings of one or more
    messages and must return only once they are durable (``Pipeline.ingest``); QoS 1/2 messages
    are acknowledged after it returns. If it raises, the batch is retried with back-off and
    nothing is acknowledged meanwhile. ``clock`` gives the receive time (payloads without a
    timestamp) and the reference for the timestamp skew limits.
    """

    def __init__(
        self,
        config: SiteConfig,
        sink: Callable[[Sequence[Reading]], None],
        *,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self._mapper = MessageMapper(config)
        self.settings = self._mapper.settings
        self.client_id = self.settings.client_id or f"facmon-{config.site.id}"
        self._sink = sink
        self._clock = clock
        self._v5 = self.settings.protocol == "5"
        self._queue: queue.Queue[_Item] = queue.Queue(maxsize=self.settings.max_pending)
        self._lock = threading.Lock()
        self._c = _Counters()
        self._topic_logs: dict[str, _TopicLog] = {}
        self._generation = 0
        self._writing = 0  # messages the writer thread took from the queue and has not finished
        self._connected = False
        self._down_logged = False
        self._stopping = threading.Event()
        self._writer: threading.Thread | None = None
        self._sub_mids: dict[int, list[str]] = {}
        self._client = self._make_client()

    # -- lifecycle -------------------------------------------------------------------------------

    def _make_client(self) -> mqtt.Client:
        s = self.settings
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            clean_session=None if self._v5 else False,
            protocol=MQTTProtocolVersion.MQTTv5 if self._v5 else MQTTProtocolVersion.MQTTv311,
            reconnect_on_failure=True,
            manual_ack=True,
        )
        if s.username is not None:
            client.username_pw_set(
                s.username, None if s.password is None else s.password.get_secret_value()
            )
        if s.tls is not None:
            client.tls_set(
                ca_certs=None if s.tls.ca_file is None else str(s.tls.ca_file),
                certfile=None if s.tls.cert_file is None else str(s.tls.cert_file),
                keyfile=None if s.tls.key_file is None else str(s.tls.key_file),
                cert_reqs=ssl.CERT_REQUIRED if s.tls.verify else ssl.CERT_NONE,
            )
            client.tls_insecure_set(not s.tls.verify)
        client.reconnect_delay_set(
            max(1, int(s.reconnect_min.total_seconds())),
            max(1, int(s.reconnect_max.total_seconds())),
        )
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        return client

    def start(self) -> None:
        """Connect in the background (retrying with back-off) and start consuming."""
        if self._writer is not None:
            raise RuntimeError("MqttCollector already started")
        s = self.settings
        self._writer = threading.Thread(target=self._write_loop, name="facmon-mqtt", daemon=True)
        self._writer.start()
        keepalive = int(s.keepalive.total_seconds())
        if self._v5:
            props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            props.SessionExpiryInterval = min(int(s.session_expiry.total_seconds()), 0xFFFFFFFF)
            # The broker keeps at most this many unacknowledged QoS 1/2 messages in flight to
            # us: with acks after store this bounds what the broker pushes ahead of the store.
            props.ReceiveMaximum = min(s.max_pending, 65535)
            self._client.connect_async(
                s.host, s.port, keepalive, clean_start=False, properties=props
            )
        else:
            self._client.connect_async(s.host, s.port, keepalive)
        self._client.loop_start()

    def stop(self, timeout: float = 10.0) -> None:
        """Store what was received (up to ``timeout``), acknowledge it, then disconnect.

        Messages arriving meanwhile are left unacknowledged: the broker keeps them for the
        next start (QoS 1/2).
        """
        self._stopping.set()
        writer = self._writer
        if writer is not None:
            writer.join(timeout)
            if writer.is_alive():
                log.warning(
                    "MQTT: %d received messages not stored at shutdown; the broker delivers "
                    "them again (QoS 1/2)",
                    self._queue.qsize(),
                )
        self._client.disconnect()
        self._client.loop_stop()

    async def run(self) -> None:
        """Consume until cancelled; then stop as :meth:`stop` does."""
        self.start()
        try:
            await asyncio.Event().wait()
        finally:
            await asyncio.to_thread(self.stop)

    @property
    def connected(self) -> bool:
        return self._connected

    @property
    def subscribed(self) -> bool:
        """Connected, and the broker answered the subscriptions of this connection."""
        return self._connected and not self._sub_mids

    @property
    def stats(self) -> MqttStats:
        with self._lock:
            c = self._c
            return MqttStats(
                connected=self._connected,
                connects=c.connects,
                received=c.received,
                stored=c.stored,
                readings=c.readings,
                acked=c.acked,
                bad={t: dict(r) for t, r in c.bad.items()},
                unknown_devices=dict(c.unknown),
                pending=self._queue.qsize() + self._writing,
                sink_errors=c.sink_errors,
                last_error=c.last_error,
            )

    # -- paho callbacks (network thread) -----------------------------------------------------

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.ConnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        s = self.settings
        if reason.is_failure:
            self._note_down(f"broker refused the connection: {reason}")
            return
        with self._lock:
            self._generation += 1
            self._c.connects += 1
            first = self._c.connects == 1
        if not first and not flags.session_present:
            log.warning(
                "MQTT: the broker at %s:%d had no session for %s (expired or lost in a broker "
                "restart without persistence): messages published while facmon was "
                "disconnected are lost",
                s.host,
                s.port,
                self.client_id,
            )
        elif first or self._down_logged:
            log.info(
                "MQTT: connected to %s:%d as %s (session %s)",
                s.host,
                s.port,
                self.client_id,
                "resumed" if flags.session_present else "new",
            )
        self._down_logged = False
        # Every connect, not only new sessions: topics added to the config since the session
        # was created must be subscribed too.
        if self._v5:
            # retainHandling 1: retained messages only for subscriptions the session lacks, so
            # a resumed session is not flooded with retained messages on every reconnect.
            topics: list[tuple[str, Any]] = [
                (sub.topic, SubscribeOptions(qos=sub.qos, retainHandling=1))
                for sub in s.subscriptions
            ]
        else:
            topics = [(sub.topic, sub.qos) for sub in s.subscriptions]
        self._sub_mids.clear()  # SUBACKs of a lost connection never come
        _, mid = client.subscribe(topics)
        if mid is not None:
            self._sub_mids[mid] = [t for t, _ in topics]
        with self._lock:
            self._connected = True

    def _on_subscribe(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reasons: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        topics = self._sub_mids.pop(mid, [])
        for topic, rc in zip(topics, reasons, strict=False):
            if rc.is_failure:
                log.warning("MQTT: the broker refused the subscription to %r: %s", topic, rc)

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        self._note_down("cannot reach the broker")

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.DisconnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        with self._lock:
            self._connected = False
        if not self._stopping.is_set():
            self._note_down(f"connection lost ({reason})")

    def _note_down(self, why: str) -> None:
        s = self.settings
        with self._lock:
            self._connected = False
            self._c.last_error = why
        if not self._down_logged:
            self._down_logged = True
            log.warning(
                "MQTT: %s at %s:%d; reconnecting with back-off up to %s",
                why,
                s.host,
                s.port,
                s.reconnect_max,
            )

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        if self._stopping.is_set():
            return  # not acknowledged: the broker delivers it again after the restart
        received = self._clock()
        received = received.replace(microsecond=received.microsecond - received.microsecond % 1000)
        topic = msg.topic
        with self._lock:
            self._c.received += 1
            generation = self._generation
        try:
            readings = self._mapper.readings(topic, msg.payload, received)
        except PayloadError as e:
            self._bad(topic, e, received)
            readings = []
        except UnknownDeviceError as e:
            self._unknown(e.device, topic)
            readings = []
        # Dropped messages go through the queue too: acknowledgements stay in arrival order.
        item = _Item(readings, msg.mid, msg.qos, generation)
        while not self._stopping.is_set():
            try:
                self._queue.put(item, timeout=0.5)
                return
            except queue.Full:
                continue  # back-pressure: the socket is not read while we wait here

    def _bad(self, topic: str, e: PayloadError, now: datetime) -> None:
        with self._lock:
            key = topic
            if key not in self._c.bad and len(self._c.bad) >= _MAX_TRACKED_TOPICS:
                key = _OTHER_TOPICS
            per = self._c.bad.setdefault(key, {})
            per[e.reason] = per.get(e.reason, 0) + 1
            state = self._topic_logs.get(key)
            if state is None:
                self._topic_logs[key] = _TopicLog(now + _BAD_LOG_EVERY)
                suppressed = -1
            elif now >= state.next_log:
                suppressed = state.suppressed
                state.suppressed = 0
                state.next_log = now + _BAD_LOG_EVERY
            else:
                state.suppressed += 1
                return
        more = ""
        if suppressed > 0:
            more = f" ({suppressed} more dropped on this topic since the last report)"
        log.warning("MQTT: dropped a message on %s: %s: %s%s", topic, e.reason, e.detail, more)

    def _unknown(self, device: str, topic: str) -> None:
        with self._lock:
            n = self._c.unknown.get(device, 0)
            if n == 0 and len(self._c.unknown) >= _MAX_TRACKED_TOPICS:
                device = "<other devices>"
                n = self._c.unknown.get(device, 0)
            self._c.unknown[device] = n + 1
        if n == 0:
            log.warning(
                "MQTT: messages for device %r (topic %s) are dropped: the site config does not "
                "declare it (add it under 'devices' with source type mqtt)",
                device,
                topic,
            )

    # -- writer thread ---------------------------------------------------------------------------

    def _write_loop(self) -> None:
        backoff = 0.5
        failing = False
        while True:
            try:
                first = self._queue.get(timeout=0.2)
            except queue.Empty:
                if self._stopping.is_set():
                    return
                continue
            if self._queue.qsize() < _BATCH_MESSAGES:
                time.sleep(_BATCH_LINGER_S)
            batch = [first]
            while len(batch) < _BATCH_MESSAGES:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            with self._lock:
                self._writing = len(batch)
            readings = [r for item in batch for r in item.readings]
            while readings:
                try:
                    self._sink(readings)
                    break
                except Exception as e:
                    with self._lock:
                        self._c.sink_errors += 1
                        self._c.last_error = f"sink: {type(e).__name__}: {e}"
                    if not failing:
                        failing = True
                        log.exception(
                            "MQTT: storing received readings failed; not acknowledging them, "
                            "retrying with back-off"
                        )
                    if self._stopping.wait(backoff):
                        return  # unacknowledged: the broker delivers them again
                    backoff = min(backoff * 2, 30.0)
            if failing:
                failing = False
                backoff = 0.5
                log.info("MQTT: storing readings works again")
            self._ack(batch, len(readings))

    def _ack(self, batch: list[_Item], n_readings: int) -> None:
        with self._lock:
            # Not connected: acks would be discarded at the reconnect; the broker re-sends.
            generation = self._generation if self._connected else -1
            self._c.stored += sum(1 for item in batch if item.readings)
            self._c.readings += n_readings
        acked = 0
        for item in batch:
            # A packet id is only meaningful on the connection that delivered it; after a
            # reconnect the broker re-sends unacknowledged messages and those are acked then.
            if item.qos > 0 and item.generation == generation:
                self._client.ack(item.mid, item.qos)
                acked += 1
        with self._lock:
            self._c.acked += acked
            self._writing = 0
