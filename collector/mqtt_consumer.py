"""What every facmon MQTT subscriber does the same way: a loss-free consumer core.

:class:`collector.mqtt.MqttCollector` (the config's topics -> readings) and
:class:`collector.ingest.IngestWorker` (the edges' batches through a shared subscription) differ
in what they subscribe to and how a message becomes data; the rest is this class:

* a stable client id and a persistent session (MQTT 5: clean start off plus a session expiry;
  3.1.1: clean session off), so the broker queues messages while the consumer is away;
* manual acknowledgement: a message is acknowledged only after the sink returned (its data is
  durable), on the connection that delivered it. A crash between receive and store leaves the
  message unacknowledged and the broker delivers it again;
* received messages wait in a bounded queue for the writer thread. When it is full the network
  thread blocks, the socket is no longer read, and the broker holds the rest (back-pressure).
  A deque and a condition rather than ``queue.Queue``: a put costs one uncontended lock, not a
  lock, two condition checks and a notify per message;
* the writer thread hands whatever is queued (up to ``_BATCH_MESSAGES`` messages) to the sink in
  one call, so one fsync covers many messages; a failing sink is retried with back-off and
  nothing is acknowledged meanwhile;
* connection state, counters, and logging a lost broker once per outage.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, ClassVar, Generic, NamedTuple, TypeVar

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from collector.broker import broker_client
from config.broker import BrokerSettings

__all__ = ["ConsumerCounters", "MqttConsumer", "Queued"]

T = TypeVar("T")  # what one message became (handed to the writer thread)
S = TypeVar("S")  # what one sink call takes


class Queued(NamedTuple, Generic[T]):
    """A received message on its way to the sink; dropped messages (bad payloads) are queued
    too, with empty ``data``, so acknowledgements stay in arrival order."""

    data: T
    mid: int
    qos: int
    generation: int  # the connection that delivered it: a packet id means nothing on another


@dataclass
class ConsumerCounters:
    connects: int = 0  # successful connections, the first one included
    received: int = 0  # messages received (re-deliveries included)
    stored: int = 0  # messages whose data reached the sink
    units: int = 0  # readings or samples handed to the sink
    acked: int = 0  # QoS 1/2 acknowledgements sent
    sink_errors: int = 0
    last_error: str | None = None


class MqttConsumer(ABC, Generic[T, S]):
    """Subscriber core: connection, bounded queue, writer thread, acknowledgement after store.

    A subclass subscribes (:meth:`_subscribe`, on every connect: the session may predate a
    change of the config), turns messages into ``T`` and queues them with :meth:`_enqueue`, and
    says what one sink call stores for a batch (:meth:`_collect`). ``sink`` is called from the
    writer thread and must return only once the data is durable.
    """

    _log: ClassVar[logging.Logger]
    _prefix: ClassVar[str]  # starts every log line, e.g. "MQTT"
    _thread_name: ClassVar[str]
    _away: ClassVar[str]  # whose messages a lost session loses, for the log
    _sink_what: ClassVar[str]  # what the sink does, for the log, e.g. "storing readings"
    _BATCH_MESSAGES: ClassVar[int]  # messages per sink call: one fsync for all of them
    _BATCH_LINGER_S: ClassVar[float]  # wait this long after a batch's first message for more

    def __init__(
        self,
        broker: BrokerSettings,
        client_id: str,
        sink: Callable[[S], None],
        *,
        session_expiry: timedelta,
        max_pending: int,
    ) -> None:
        self.client_id = client_id
        self._broker = broker
        self._sink = sink
        self._session_expiry = session_expiry
        self._max_pending = max_pending
        self._v5 = broker.protocol == "5"
        self._queue: deque[Queued[T]] = deque()
        self._queue_cv = threading.Condition(threading.Lock())
        self._writer_idle = False
        self._reader_blocked = False
        self._lock = threading.Lock()
        self._c = ConsumerCounters()
        self._generation = 0
        self._writing = 0  # messages the writer thread took from the queue and has not finished
        self._connected = False
        self._down_logged = False
        self._stopping = threading.Event()
        self._writer: threading.Thread | None = None
        client = self._new_client()
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        self._client = client

    # -- what a subclass does --------------------------------------------------------------------

    def _new_client(self) -> mqtt.Client:
        return broker_client(self._broker, self.client_id, clean=False, manual_ack=True)

    @abstractmethod
    def _subscribe(self, client: mqtt.Client) -> None:
        """Subscribe on a new connection (network thread)."""

    def _subscribing(self) -> str:
        """What the connect log line adds after the client id."""
        return ""

    @abstractmethod
    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None: ...

    @abstractmethod
    def _on_subscribe(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reasons: list[ReasonCode],
        properties: Properties | None,
    ) -> None: ...

    @abstractmethod
    def _collect(self, batch: Sequence[Queued[T]]) -> tuple[S | None, int, int]:
        """For one sink call: its argument (None: nothing to store), the messages it stores
        and the readings or samples it holds."""

    def _ack_qos1(self, mids: Sequence[int]) -> None:
        for mid in mids:
            self._client.ack(mid, 1)

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        """Connect in the background (retrying with back-off) and start consuming."""
        if self._writer is not None:
            raise RuntimeError(f"{type(self).__name__} already started")
        s = self._broker
        self._writer = threading.Thread(
            target=self._write_loop, name=self._thread_name, daemon=True
        )
        self._writer.start()
        keepalive = int(s.keepalive.total_seconds())
        if self._v5:
            props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            props.SessionExpiryInterval = min(int(self._session_expiry.total_seconds()), 0xFFFFFFFF)
            # The broker keeps at most this many unacknowledged QoS 1/2 messages in flight to
            # us: with acks after store this bounds what the broker pushes ahead of the store.
            props.ReceiveMaximum = min(self._max_pending, 65535)
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
                self._log.warning(
                    "%s: %d received messages not stored at shutdown; the broker delivers "
                    "them again (QoS 1/2)",
                    self._prefix,
                    len(self._queue),
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

    def _pending(self) -> int:
        """Messages received and not yet through the sink (queued or being written)."""
        return len(self._queue) + self._writing

    # -- paho callbacks (network thread) -----------------------------------------------------

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.ConnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        s = self._broker
        if reason.is_failure:
            self._note_down(f"broker refused the connection: {reason}")
            return
        with self._lock:
            self._generation += 1
            self._c.connects += 1
            first = self._c.connects == 1
        if not first and not flags.session_present:
            self._log.warning(
                "%s: the broker at %s:%d had no session for %s (expired or lost in a broker "
                "restart without persistence): messages %s are lost",
                self._prefix,
                s.host,
                s.port,
                self.client_id,
                self._away,
            )
        elif first or self._down_logged:
            self._log.info(
                "%s: connected to %s:%d as %s%s (session %s)",
                self._prefix,
                s.host,
                s.port,
                self.client_id,
                self._subscribing(),
                "resumed" if flags.session_present else "new",
            )
        self._down_logged = False
        self._subscribe(client)
        with self._lock:
            self._connected = True

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
        s = self._broker
        with self._lock:
            self._connected = False
            self._c.last_error = why
        if not self._down_logged:
            self._down_logged = True
            self._log.warning(
                "%s: %s at %s:%d; reconnecting with back-off up to %s",
                self._prefix,
                why,
                s.host,
                s.port,
                s.reconnect_max,
            )

    def _received(self) -> int:
        """Count a received message; the generation of the connection it came on."""
        with self._lock:
            self._c.received += 1
            return self._generation

    def _enqueue(self, item: Queued[T]) -> None:
        """Queue ``item`` for the writer thread, waiting while the queue is full."""
        limit = self._max_pending
        with self._queue_cv:
            while len(self._queue) >= limit:
                if self._stopping.is_set():
                    return  # not acknowledged: the broker delivers it again after the restart
                # Back-pressure: the socket is not read while we wait here.
                self._reader_blocked = True
                self._queue_cv.wait(0.5)
            self._queue.append(item)
            if self._writer_idle:
                self._queue_cv.notify_all()

    # -- writer thread ---------------------------------------------------------------------------

    def _write_loop(self) -> None:
        backoff = 0.5
        failing = False
        q = self._queue
        while True:
            with self._queue_cv:
                if not q:
                    if self._stopping.is_set():
                        return
                    self._writer_idle = True
                    self._queue_cv.wait(0.2)
                    self._writer_idle = False
                    continue
            if len(q) < self._BATCH_MESSAGES:
                time.sleep(self._BATCH_LINGER_S)
            with self._queue_cv:
                batch = [q.popleft() for _ in range(min(len(q), self._BATCH_MESSAGES))]
                if self._reader_blocked:
                    self._reader_blocked = False
                    self._queue_cv.notify_all()
            with self._lock:
                self._writing = len(batch)
            data, stored, units = self._collect(batch)
            while data is not None:
                try:
                    self._sink(data)
                    break
                except Exception as e:
                    with self._lock:
                        self._c.sink_errors += 1
                        self._c.last_error = f"sink: {type(e).__name__}: {e}"
                    if not failing:
                        failing = True
                        self._log.exception(
                            "%s: %s failed; not acknowledging them, retrying with back-off",
                            self._prefix,
                            self._sink_what,
                        )
                    if self._stopping.wait(backoff):
                        return  # unacknowledged: the broker delivers them again
                    backoff = min(backoff * 2, 30.0)
            if failing:
                failing = False
                backoff = 0.5
                self._log.info("%s: %s works again", self._prefix, self._sink_what)
            self._ack(batch, stored, units)

    def _ack(self, batch: Sequence[Queued[T]], stored: int, units: int) -> None:
        with self._lock:
            # Not connected: acks would be discarded at the reconnect; the broker re-sends.
            generation = self._generation if self._connected else -1
            self._c.stored += stored
            self._c.units += units
        # A packet id is only meaningful on the connection that delivered it; after a
        # reconnect the broker re-sends unacknowledged messages and those are acked then.
        qos1 = [i.mid for i in batch if i.qos == 1 and i.generation == generation]
        qos2 = [i.mid for i in batch if i.qos == 2 and i.generation == generation]
        self._ack_qos1(qos1)
        for mid in qos2:
            self._client.ack(mid, 2)
        with self._lock:
            self._c.acked += len(qos1) + len(qos2)
            self._writing = 0
