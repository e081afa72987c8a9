"""The edge role: publish every sample the pipeline stores to a central MQTT broker.

``Pipeline.ingest`` hands each batch to :meth:`UplinkPublisher.put` right after the local
outbox took it; ``put`` returns once the samples are in the uplink's own on-disk buffer (an
:class:`~store.outbox.Outbox` file, ``<data_dir>/uplink.db``). A publisher thread then:

1. waits until the broker connection is up (while it is down the buffer grows on disk);
2. takes the oldest samples (up to ``batch_size x max_inflight``), encodes them as
   ``facmon-batch`` messages (collector.uplink_format), one building per message, and publishes
   them in buffer order to ``<topic_prefix>/readings`` with QoS 1;
3. deletes them from the buffer only when the broker acknowledged every message (PUBACK).
   An MQTT 5 PUBACK with "no matching subscribers" (no ingest worker subscribed) or a failure
   code is not a delivery: that message is published again with back-off, after the others
   of its window (the only case where the order of messages changes).

So a crash or a broker outage at any point loses nothing: what was not acknowledged is still on
disk and is published again (a duplicate is harmless: the central store is idempotent on
(device, metric, time)). paho re-sends unacknowledged messages itself after a reconnect, in
order, so the publisher never re-sends on its own while the process lives; the order of
messages per building is the order the samples were stored in.

The buffer is bounded (``max_buffered`` samples): past it the oldest samples are dropped,
counted in :attr:`UplinkStats.dropped` and logged once per episode, so a long outage cannot fill
the disk of the building's machine.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from collector.broker import broker_client
from collector.uplink_format import encode_batches
from config.models import SiteConfig
from config.uplink import UplinkSettings
from store.outbox import Outbox
from store.reading import Reading

__all__ = ["UplinkPublisher", "UplinkStats"]

log = logging.getLogger(__name__)

TOPIC_SUFFIX = "readings"
_NO_MATCHING_SUBSCRIBERS = 16  # MQTT 5 PUBACK reason code


@dataclass(frozen=True)
class UplinkStats:
    connected: bool
    buffered: int  # samples on disk not yet acknowledged by the broker
    published: int  # samples the broker acknowledged this run
    messages: int  # messages the broker acknowledged this run
    dropped: int  # samples dropped: buffer full (oldest first) or not representable
    refused: int  # batches the broker acknowledged without taking (no subscriber); re-sent
    connects: int
    last_error: str | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "connected": self.connected,
            "buffered": self.buffered,
            "published": self.published,
            "messages": self.messages,
            "dropped": self.dropped,
            "refused": self.refused,
            "connects": self.connects,
            "last_error": self.last_error,
        }


class UplinkPublisher:
    """Buffers samples on disk and publishes them to the central broker (module docstring)."""

    def __init__(self, config: SiteConfig) -> None:
        if config.uplink is None:
            raise ValueError("the site config has no 'uplink' block")
        self.settings: UplinkSettings = config.uplink
        self.site = config.site.id
        self.client_id = self.settings.client_id or f"facmon-uplink-{config.site.id}"
        s = self.settings
        self.buffer = Outbox(config.uplink_buffer_path, s.max_buffered, chunk_size=s.batch_size)
        self._cond = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._connected = False
        self._down_logged = False
        self._acked: set[int] = set()  # mids of the current window the broker took
        self._refused: dict[int, str] = {}  # mids it acknowledged without taking, and why
        self._refusing = False  # a refusal episode is going on (logged once)
        self._refusals = 0
        self._published = 0
        self._messages = 0
        self._connects = 0
        self._last_error: str | None = None
        self._full_logged = False
        self._client = broker_client(s, self.client_id, clean=True)
        self._client.max_inflight_messages_set(s.max_inflight)
        self._client.on_connect = self._on_connect
        self._client.on_connect_fail = self._on_connect_fail
        self._client.on_disconnect = self._on_disconnect
        self._client.on_publish = self._on_publish
        if self.buffer.depth():
            log.info(
                "uplink: %d samples buffered from before; publishing them first",
                self.buffer.depth(),
            )

    # -- producer side (Pipeline.ingest) -------------------------------------------------------

    def put(self, readings: Sequence[Reading]) -> None:
        """Buffer ``readings`` on disk for publishing; they are on disk when this returns.

        Raises :class:`sqlite3.Error` when the buffer file cannot be written.
        """
        if not readings:
            return
        before = self.buffer.dropped_overflow
        self.buffer.put(readings)
        dropped = self.buffer.dropped_overflow - before
        with self._cond:
            if dropped and not self._full_logged:
                self._full_logged = True
                log.warning(
                    "uplink: the disk buffer is full (%d samples, uplink.max_buffered) while the "
                    "broker at %s:%d is unreachable or slow: dropping the oldest samples; they "
                    "stay in this building's local store but never reach the central store",
                    self.settings.max_buffered,
                    self.settings.host,
                    self.settings.port,
                )
            elif (
                not dropped
                and self._full_logged
                and self.buffer.depth() < (self.settings.max_buffered * 0.9)
            ):
                self._full_logged = False
            self._cond.notify_all()

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        """Connect in the background (retrying with back-off) and start publishing."""
        if self._thread is not None:
            raise RuntimeError("UplinkPublisher already started")
        s = self.settings
        keepalive = int(s.keepalive.total_seconds())
        if s.protocol == "5":
            self._client.connect_async(s.host, s.port, keepalive, clean_start=True)
        else:
            self._client.connect_async(s.host, s.port, keepalive)
        self._client.loop_start()
        self._thread = threading.Thread(target=self._run, name="facmon-uplink", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop publishing; whatever the broker has not acknowledged stays in the buffer."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
            self._client.disconnect()
            self._client.loop_stop()
            self._thread = None

    def close(self) -> None:
        """Stop, then close the buffer file (what it holds is published at the next start)."""
        self.stop()
        self.buffer.close()

    async def run(self) -> None:
        """Publish until cancelled; then stop as :meth:`stop` does."""
        self.start()
        try:
            await asyncio.Event().wait()
        finally:
            await asyncio.to_thread(self.stop)

    @property
    def connected(self) -> bool:
        return self._connected

    @property
    def stats(self) -> UplinkStats:
        with self._cond:
            return UplinkStats(
                connected=self._connected,
                buffered=self.buffer.depth(),
                published=self._published,
                messages=self._messages,
                dropped=self.buffer.dropped_overflow + self.buffer.dropped_invalid,
                refused=self._refusals,
                connects=self._connects,
                last_error=self._last_error,
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
        if reason.is_failure:
            self._note_down(f"broker refused the connection: {reason}")
            return
        with self._cond:
            self._connects += 1
            first = self._connects == 1
            self._connected = True
            self._cond.notify_all()
        if first or self._down_logged:
            log.info(
                "uplink: connected to %s:%d as %s; %d samples buffered",
                self.settings.host,
                self.settings.port,
                self.client_id,
                self.buffer.depth(),
            )
        self._down_logged = False

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
        with self._cond:
            self._connected = False
            stopping = self._stopping
        if not stopping:
            self._note_down(f"connection lost ({reason})")

    def _note_down(self, why: str) -> None:
        with self._cond:
            self._connected = False
            self._last_error = why
        if not self._down_logged:
            self._down_logged = True
            log.warning(
                "uplink: %s at %s:%d; buffering samples on disk (%d now) and reconnecting with "
                "back-off up to %s",
                why,
                self.settings.host,
                self.settings.port,
                self.buffer.depth(),
                self.settings.reconnect_max,
            )

    def _on_publish(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        with self._cond:
            # MQTT 5 PUBACK reason codes: 16 "no matching subscribers" means the broker dropped
            # the message (no ingest worker subscribed, e.g. right after a broker restart:
            # Mosquitto 2.0 does not restore shared subscriptions from its persistence file);
            # failures (>= 0x80: not authorised, quota exceeded ...) mean it never took it.
            if reason.value == _NO_MATCHING_SUBSCRIBERS or reason.is_failure:
                self._refused[mid] = str(reason)
            else:
                self._acked.add(mid)
            self._cond.notify_all()

    # -- publisher thread ------------------------------------------------------------------------

    def _run(self) -> None:
        s = self.settings
        window = s.batch_size * s.max_inflight
        while True:
            with self._cond:
                # Nothing to do while the buffer is empty; nothing worth trying while the
                # broker is away (paho would only queue the messages in memory).
                self._cond.wait_for(
                    lambda: self._stopping or (self._connected and self.buffer.depth() > 0)
                )
                if self._stopping:
                    return
                self._acked.clear()
                self._refused.clear()
            try:
                self._publish_window(window)
            except Exception as e:  # never let the thread die: the samples are safe on disk
                with self._cond:
                    self._last_error = f"{type(e).__name__}: {e}"
                log.exception("uplink: publishing failed; retrying in 5 s")
                with self._cond:
                    self._cond.wait_for(lambda: self._stopping, 5.0)

    def _publish_window(self, window: int) -> None:
        s = self.settings
        token, batch = self.buffer.take(window)
        if not batch:
            return
        pending: dict[int, tuple[str, bytes]] = {}
        for msg in encode_batches(self.site, batch, s.batch_size):
            topic = f"{s.topic_prefix.format(site=self.site, building=msg.building)}/{TOPIC_SUFFIX}"
            pending[self._publish(topic, msg.payload)] = (topic, msg.payload)
        messages = len(pending)
        retry = s.reconnect_min.total_seconds()
        while True:
            with self._cond:
                self._wait_settled(set(pending))
                if self._stopping:
                    return  # what is not acknowledged stays buffered: published at next start
                refused = {mid: self._refused.pop(mid) for mid in pending if mid in self._refused}
                self._acked.difference_update(pending)
            if not refused:
                break
            self._refused_episode(refused, retry)
            with self._cond:
                if self._cond.wait_for(lambda: self._stopping, retry):
                    return
            retry = min(retry * 2, s.reconnect_max.total_seconds())
            pending = {self._publish(*pending[mid]): pending[mid] for mid in refused}
        self.buffer.ack(token)
        with self._cond:
            self._published += len(batch)
            self._messages += messages
            if self._refusing:
                self._refusing = False
                log.info("uplink: the broker takes the batches again")
            self._cond.notify_all()

    def _wait_settled(self, mids: set[int]) -> None:
        """Until the broker answered every one of ``mids`` (or stopping); lock held."""
        self._cond.wait_for(lambda: self._stopping or mids <= self._acked | self._refused.keys())

    def _publish(self, topic: str, payload: bytes) -> int:
        # Published even if the connection dropped meanwhile: paho queues the message and sends
        # it after the reconnect, in order.
        info = self._client.publish(topic, payload, qos=self.settings.qos)
        return info.mid

    def _refused_episode(self, refused: dict[int, str], retry: float) -> None:
        with self._cond:
            self._refusals += len(refused)
            self._last_error = (
                f"broker refused {len(refused)} batches: {next(iter(refused.values()))}"
            )
            first = not self._refusing
            self._refusing = True
        if first:
            log.warning(
                "uplink: the broker at %s:%d acknowledged %d batches without taking them (%s): "
                "no ingest worker subscribed, or not allowed; keeping them buffered and "
                "retrying with back-off from %.0f s",
                self.settings.host,
                self.settings.port,
                len(refused),
                next(iter(refused.values())),
                retry,
            )
