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
the sink in one call, so one fsync covers many messages; then it acknowledges the batch's QoS 1
messages in one write (``_FastClient.ack_many``), never before the sink returned. The session,
queue, writer thread and acknowledgements are the ingest workers' too
(:class:`collector.mqtt_consumer.MqttConsumer`).

Throughput (benchmarks/mqtt_ingest.py): the network thread shares the GIL with the writer
threads, so what costs most is not parsing but paho's per-message overhead -- several ``recv``
calls per packet (each a GIL hand-over), an MQTT 5 ``Properties`` object and an ``MQTTMessage``
with its own condition variable per message, one PUBACK packet and wake-up per ack.
``_FastClient`` removes those on paho 2.x (it falls back to plain paho if paho's internals
change); the mapping caches what depends on the topic alone and parses JSON with orjson.

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

import logging
import math
import re
import struct
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.exception import MalformedPacket
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from collector.broker import broker_client
from collector.mqtt_consumer import ConsumerCounters, MqttConsumer, Queued
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
_MISSING = object()
_TOPIC_CACHE = 10_000  # topics (and device-topic pairs) whose mapping is remembered
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


def _path_get(data: Any, path: str, steps: Sequence[str] | None = None) -> Any:
    if steps is not None and len(steps) == 1 and isinstance(data, dict):
        try:  # the common case: a top-level field
            return data[path]
        except KeyError:
            pass
    node = data
    for step in path.split(".") if steps is None else steps:
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
    # The JSON fields ready to apply: metric, path, its steps, the unit the reading gets.
    json_fields: tuple[tuple[str, str, tuple[str, ...], str], ...] = ()

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
        json_fields = tuple(
            (metric, path, tuple(path.split(".")), unit if unit is not None else
             sub.units.get(metric, sub.unit))
            for metric, path, unit in fields
        )  # fmt: skip
        return cls(sub, tuple(names), fields, json_fields)

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
        # What depends on the topic alone (its subscription and the template's bindings) and on
        # the (device, topic) pair, worked out once: matching filters and templates level by
        # level cost more than decoding the payload. Bounded, since wildcards admit any number
        # of topics: past the bound a cache starts over.
        self._topics: dict[str, tuple[_Route, dict[str, str]] | PayloadError] = {}
        self._device_topics: dict[
            tuple[str, str], tuple[Device, Mapping[str, str]] | PayloadError | UnknownDeviceError
        ] = {}

    def route(self, topic: str) -> _Route | None:
        for r in self._routes:
            if topic_matches(r.sub.topic, topic):
                return r
        return None

    def _topic(self, topic: str) -> tuple[_Route, dict[str, str]]:
        found = self._topics.get(topic)
        if found is None:
            route = self.route(topic)
            try:
                if route is None:
                    raise PayloadError(
                        "no_subscription", f"no subscription matches topic {topic!r}"
                    )
                found = (route, route.bind(topic))
            except PayloadError as e:
                found = e
            if len(self._topics) >= _TOPIC_CACHE:
                self._topics.clear()
            self._topics[topic] = found
        if isinstance(found, PayloadError):
            raise PayloadError(found.reason, found.detail)
        return found

    def readings(self, topic: str, payload: bytes | bytearray, received: datetime) -> list[Reading]:
        """Readings of one message. Raises PayloadError or UnknownDeviceError."""
        route, bound = self._topic(topic)
        sub = route.sub
        if sub.format == "json":
            return self._json(route, bound, topic, payload, received)
        try:
            text = payload.decode("utf-8")
        except UnicodeDecodeError:
            raise PayloadError("not_utf8", "payload is not UTF-8 text") from None
        if sub.format == "number":
            return self._plain(route, bound, topic, text, received)
        return self._lines(route, bound, topic, text, received)

    # -- formats -------------------------------------------------------------------------------

    def _json(
        self,
        route: _Route,
        bound: dict[str, str],
        topic: str,
        payload: bytes | bytearray,
        received: datetime,
    ) -> list[Reading]:
        sub = route.sub
        try:
            data = orjson.loads(payload)
        except orjson.JSONDecodeError as e:
            try:
                payload.decode("utf-8")
            except UnicodeDecodeError:
                raise PayloadError("not_utf8", "payload is not UTF-8 text") from None
            # NaN and Infinity, which Python's json module would read, are not JSON either.
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
        flat = type(data) is dict
        values: list[tuple[str, float, str]] = []
        for metric, path, steps, unit in route.json_fields:
            raw = data.get(path, _MISSING) if flat and len(steps) == 1 else _MISSING
            if raw is _MISSING:
                raw = _path_get(data, path, steps)
            # A finite float as is (inf - inf and nan - nan are nan); the rest is checked.
            value = raw if type(raw) is float and raw - raw == 0.0 else _number(raw, path)
            values.append((metric, value, unit))
        device, tags = self._device(device_id, topic)
        good = Quality.GOOD
        return [Reading(t, device.id, m, v, u, good, tags) for m, v, u in values]

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
        key = (device_id, topic)
        cached = self._device_topics.get(key)
        if cached is None:
            try:
                cached = self._check_device(device_id, topic)
            except (PayloadError, UnknownDeviceError) as e:
                cached = e
            if len(self._device_topics) >= _TOPIC_CACHE:
                self._device_topics.clear()
            self._device_topics[key] = cached
        if isinstance(cached, PayloadError):
            raise PayloadError(cached.reason, cached.detail)
        if isinstance(cached, UnknownDeviceError):
            raise UnknownDeviceError(cached.device)
        return cached

    def _check_device(self, device_id: str, topic: str) -> tuple[Device, Mapping[str, str]]:
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
# paho, with fewer system calls per message


class _BufferedSocket:
    """The broker connection with a read buffer in front.

    paho reads a packet in three or more ``recv`` calls (the command byte, the length bytes
    one by one, the rest) and selects before each packet. Every such call releases the GIL, and
    while the writer threads are busy (outbox encoding, the store) taking it back costs up to
    the interpreter's switch interval: measured at QoS 0 with ~100-byte messages, facmon's
    network thread was held to ~2k messages/s, a fifth of a bare subscriber's rate. Here one
    ``recv`` brings up to 256 kB and the small reads are served from it; :meth:`pending`
    (which paho asks of TLS sockets) tells paho's loop not to wait in ``select`` while
    buffered bytes remain.
    """

    _CHUNK = 256 * 1024

    def __init__(self, sock: Any) -> None:
        self._sock = sock
        self._buf = b""
        self._pos = 0

    def recv(self, bufsize: int) -> bytes:
        pos = self._pos
        if pos >= len(self._buf):
            data: bytes = self._sock.recv(self._CHUNK)  # BlockingIOError etc. reach paho
            if len(data) <= bufsize:
                return data
            self._buf, pos = data, 0
        end = pos + bufsize
        self._pos = end
        return self._buf[pos:end]

    def take_packet(self) -> tuple[int, bytes] | None:
        """The next whole MQTT packet in the buffer, (first byte, the rest after the length),
        or None when the buffer does not hold a whole one."""
        buf, pos = self._buf, self._pos
        end = len(buf)
        i = pos + 1
        length = 0
        shift = 0
        while True:
            if i >= end or shift > 21:  # incomplete, or malformed: paho's own read reports it
                return None
            byte = buf[i]
            i += 1
            length |= (byte & 0x7F) << shift
            if not byte & 0x80:
                break
            shift += 7
        if end - i < length:
            return None
        self._pos = i + length
        return buf[pos], buf[i : i + length]

    def pending(self) -> int:
        inner = getattr(self._sock, "pending", None)
        return len(self._buf) - self._pos + (inner() if inner is not None else 0)

    def send(self, data: bytes | bytearray | memoryview) -> int:
        sent: int = self._sock.send(data)
        return sent

    def fileno(self) -> int:
        fd: int = self._sock.fileno()
        return fd

    def setblocking(self, flag: bool) -> None:
        self._sock.setblocking(flag)

    def close(self) -> None:
        self._sock.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


# The private parts of paho-mqtt 2.x that _FastClient relies on. If a paho release changes
# them, the collector falls back to the plain client (slower, equally correct).
_PAHO_METHODS = (
    "_create_socket",
    "_packet_handle",
    "_packet_read",
    "_loop_rc_handle",
    "_packet_queue",
    "_handle_publish",
    "_send_puback",
)
_PAHO_ATTRIBUTES = (
    "_in_packet",
    "_protocol",
    "_manual_ack",
    "_in_callback_mutex",
    "_msgtime_mutex",
    "_transport",
)
_PUBACK = 0x40
_MAX_PACKETS_PER_READ = 1000  # then paho's loop runs once: writes (acks), keep-alive


# (topic, payload, packet id, QoS) of one QoS 0 or 1 message; called on the network thread.
PublishHandler = Callable[[str, bytes | bytearray, int, int], None]


class _FastClient(mqtt.Client):
    """paho's client with a buffered socket, many packets per read, a direct path for QoS 0/1
    messages and batched PUBACKs.

    With ``publish_handler`` set, a QoS 0 or 1 PUBLISH without MQTT 5 properties goes straight
    to it: paho would build a ``Properties`` object (MQTT 5), an ``MQTTMessage`` with its own
    ``threading.Condition`` and match the topic against per-topic callbacks first, which
    together cost more than facmon's whole mapping of the message. Everything else (QoS 2,
    messages with properties, topics that are not UTF-8) takes paho's own path to
    ``on_message``.
    """

    publish_handler: PublishHandler | None = None

    def _packet_read(self) -> MQTTErrorCode:
        # A whole packet in the buffer is handled at once; anything else (a packet begun by an
        # earlier read, or not all received yet) takes paho's byte-by-byte read.
        sock = self._sock
        if not isinstance(sock, _BufferedSocket) or self._in_packet["command"] != 0:
            return super()._packet_read()
        whole = sock.take_packet()
        if whole is None:
            return super()._packet_read()
        command, body = whole
        self._in_packet = _in_packet(command, body)
        try:
            rc: MQTTErrorCode = self._packet_handle()
        except MalformedPacket:
            rc = MQTTErrorCode.MQTT_ERR_PROTOCOL
        self._in_packet = _in_packet(0, b"")
        with self._msgtime_mutex:
            self._last_bytes_received = time.monotonic()  # paho's clock (time_func)
        return rc

    def _handle_publish(self) -> MQTTErrorCode:
        handler = self.publish_handler
        header: int = self._in_packet["command"]
        qos = (header & 0x06) >> 1
        if handler is None or qos == 2:
            return super()._handle_publish()
        packet: bytes | bytearray = self._in_packet["packet"]
        size = len(packet)
        v5 = self._protocol == MQTTProtocolVersion.MQTTv5
        end = 2 + ((packet[0] << 8) | packet[1]) if size >= 2 else size + 1
        # Too short for its topic, packet id and property length: paho reports it malformed.
        if size < end + (2 if qos else 0) + (1 if v5 else 0) or end == 2:
            return super()._handle_publish()
        try:
            topic = packet[2:end].decode("utf-8")
        except UnicodeDecodeError:
            return super()._handle_publish()
        mid = 0
        if qos:
            mid = (packet[end] << 8) | packet[end + 1]
            end += 2
        if v5:
            if packet[end] != 0:  # properties follow
                return super()._handle_publish()
            end += 1
        with self._in_callback_mutex:
            handler(topic, packet[end:], mid, qos)
        if qos == 1 and not self._manual_ack:
            return self._send_puback(mid)
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    def _create_socket(self) -> Any:
        sock = super()._create_socket()
        return sock if self._transport == "websockets" else _BufferedSocket(sock)

    def loop_read(self, max_packets: int = 1) -> MQTTErrorCode:
        # paho reads one packet per select() unless QoS 2 flows are in progress; read every
        # whole packet already buffered instead.
        for _ in range(_MAX_PACKETS_PER_READ):
            sock = self._sock
            if sock is None:
                return MQTTErrorCode.MQTT_ERR_NO_CONN
            rc = self._packet_read()
            if rc > 0:
                handled: MQTTErrorCode = self._loop_rc_handle(rc)
                return handled
            if rc == MQTTErrorCode.MQTT_ERR_AGAIN:
                break
            pending = getattr(sock, "pending", None)
            if pending is None or pending() == 0:
                break
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    def ack_many(self, mids: Sequence[int]) -> None:
        """PUBACK every QoS 1 message id of ``mids`` in one write.

        paho's ``ack`` queues one packet per message: one wake-up of the network thread and one
        ``send`` each. A PUBACK without reason code means success in MQTT 3.1.1 and 5 alike.
        """
        if mids:
            packet = b"".join(_PUBACK_STRUCT.pack(_PUBACK, 2, mid) for mid in mids)
            self._packet_queue(_PUBACK, packet, 0, 0)


_PUBACK_STRUCT = struct.Struct("!BBH")


def _in_packet(command: int, body: bytes) -> Any:
    """paho's record of the packet being read, as its own read leaves it for handling."""
    return {
        "command": command,
        "have_remaining": 1 if command else 0,
        "remaining_count": [],
        "remaining_mult": 1,
        "remaining_length": len(body),
        "packet": body if command else bytearray(b""),
        "to_process": 0,
        "pos": 0,
    }


_FAST_CLIENT = all(hasattr(mqtt.Client, n) for n in _PAHO_METHODS)


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
class _TopicLog:
    next_log: datetime
    suppressed: int = 0


@dataclass
class _Counters(ConsumerCounters):
    bad: dict[str, dict[str, int]] = field(default_factory=dict)
    unknown: dict[str, int] = field(default_factory=dict)


class MqttCollector(MqttConsumer[list[Reading], list[Reading]]):
    """Subscribes to the config's MQTT topics and feeds their readings to ``sink``.

    ``sink`` is called from the collector's writer thread with the readings of one or more
    messages and must return only once they are durable (``Pipeline.ingest``); QoS 1/2 messages
    are acknowledged after it returns. If it raises, the batch is retried with back-off and
    nothing is acknowledged meanwhile. ``clock`` gives the receive time (payloads without a
    timestamp) and the reference for the timestamp skew limits.
    """

    _log = log
    _prefix = "MQTT"
    _thread_name = "facmon-mqtt"
    _away = "published while facmon was disconnected"
    _sink_what = "storing received readings"
    _BATCH_MESSAGES = _BATCH_MESSAGES
    _BATCH_LINGER_S = _BATCH_LINGER_S

    def __init__(
        self,
        config: SiteConfig,
        sink: Callable[[Sequence[Reading]], None],
        *,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self._mapper = MessageMapper(config)
        self.settings = self._mapper.settings
        self._clock = clock
        self._topic_logs: dict[str, _TopicLog] = {}
        self._sub_mids: dict[int, list[str]] = {}
        s = self.settings
        super().__init__(
            s,
            s.client_id or f"facmon-{config.site.id}",
            sink,
            session_expiry=s.session_expiry,
            max_pending=s.max_pending,
        )
        self._c: _Counters = _Counters()

    def _new_client(self) -> mqtt.Client:
        if _FAST_CLIENT:
            client = broker_client(
                self.settings,
                self.client_id,
                clean=False,
                manual_ack=True,
                client_class=_FastClient,
            )
            if isinstance(client, _FastClient) and all(
                hasattr(client, n) for n in _PAHO_ATTRIBUTES
            ):
                client.publish_handler = self._handle
                return client
        return super()._new_client()

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
                readings=c.units,
                acked=c.acked,
                bad={t: dict(r) for t, r in c.bad.items()},
                unknown_devices=dict(c.unknown),
                pending=self._pending(),
                sink_errors=c.sink_errors,
                last_error=c.last_error,
            )

    # -- paho callbacks (network thread) -----------------------------------------------------

    def _subscribe(self, client: mqtt.Client) -> None:
        s = self.settings
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

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        self._handle(msg.topic, msg.payload, msg.mid, msg.qos)

    def _handle(self, topic: str, payload: bytes | bytearray, mid: int, qos: int) -> None:
        if self._stopping.is_set():
            return  # not acknowledged: the broker delivers it again after the restart
        received = self._clock()
        received = received.replace(microsecond=received.microsecond - received.microsecond % 1000)
        generation = self._received()
        try:
            readings = self._mapper.readings(topic, payload, received)
        except PayloadError as e:
            self._bad(topic, e, received)
            readings = []
        except UnknownDeviceError as e:
            self._unknown(e.device, topic)
            readings = []
        self._enqueue(Queued(readings, mid, qos, generation))

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

    def _collect(
        self, batch: Sequence[Queued[list[Reading]]]
    ) -> tuple[list[Reading] | None, int, int]:
        readings = [r for item in batch for r in item.data]
        if not readings:
            return None, 0, 0
        return readings, sum(1 for item in batch if item.data), len(readings)

    def _ack_qos1(self, mids: Sequence[int]) -> None:
        client = self._client
        if isinstance(client, _FastClient):
            client.ack_many(mids)
        else:
            super()._ack_qos1(mids)
