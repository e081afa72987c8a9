"""The central role: consume the edges' batches through an MQTT shared subscription.

Each ``facmon ingest`` worker subscribes to ``$share/<group>/<topic>``; the broker hands every
message to one worker of the group, so adding a worker adds throughput without duplicating
anything. Mosquitto 2.x supports shared subscriptions with MQTT 5 and 3.1.1.

Loss-free the same way as :mod:`collector.mqtt` (both are a
:class:`collector.mqtt_consumer.MqttConsumer`):

* stable client id per worker and a persistent session (MQTT 5: clean start off plus session
  expiry; 3.1.1: clean session off), so what the broker assigned to a worker stays queued for it
  while it restarts. Mosquitto does not hand a departed worker's messages to the others (its
  issue 2662): a killed worker must come back (systemd ``Restart=always``) to deliver its share,
  and the broker needs ``max_queued_messages`` large enough for that while;
* manual acknowledgement: a message is acknowledged only after its samples are in the durable
  outbox (``sink``, ``DurableWriter.put``), so a worker killed at any point loses nothing; the
  broker re-delivers and the store keeps one copy per (device, metric, time);
* a bounded queue between the network thread and the writer thread: a slow store stops the
  worker reading from the socket (back-pressure) instead of buffering without bound.

Bad messages (not a ``facmon-batch``, malformed, a site not in ``ingest.sites``) are counted per
reason, logged at most once a minute per reason, and acknowledged (a poison message must not
come back forever).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from collector.mqtt_consumer import ConsumerCounters, MqttConsumer, Queued
from collector.uplink_format import BadBatch, decode_batch
from config.models import SiteConfig
from config.uplink import IngestSettings
from store.columnar import ReadingBatch

__all__ = ["IngestStats", "IngestWorker", "shared_topic"]

log = logging.getLogger(__name__)

_BATCH_MESSAGES = 200  # messages per sink call: one fsync for all of them
_BATCH_LINGER_S = 0.005  # wait this long after the first message of a batch for more
_BAD_LOG_EVERY_S = 60.0


def shared_topic(settings: IngestSettings) -> str:
    return f"$share/{settings.group}/{settings.topic}"


@dataclass(frozen=True)
class IngestStats:
    connected: bool
    subscribed: bool  # the broker accepted the shared subscription on this connection
    connects: int
    received: int  # messages received (re-deliveries included)
    stored: int  # messages whose samples reached the outbox
    samples: int  # samples handed to the outbox
    acked: int  # acknowledgements sent
    bad: dict[str, int]  # reason -> messages dropped
    pending: int  # messages received and not yet through the sink
    sink_errors: int
    last_error: str | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "connected": self.connected,
            "subscribed": self.subscribed,
            "connects": self.connects,
            "received": self.received,
            "stored": self.stored,
            "samples": self.samples,
            "acked": self.acked,
            "bad": dict(self.bad),
            "bad_total": sum(self.bad.values()),
            "pending": self.pending,
            "sink_errors": self.sink_errors,
            "last_error": self.last_error,
        }


@dataclass
class _Counters(ConsumerCounters):
    bad: dict[str, int] = field(default_factory=dict)  # reason -> messages dropped


class IngestWorker(MqttConsumer[ReadingBatch | None, ReadingBatch]):
    """One ingest worker: shared subscription -> decode -> ``sink`` -> acknowledge.

    ``sink`` is called from the worker's writer thread with the samples of one or more messages
    and must return only once they are durable (``DurableWriter.put``). ``worker`` names this
    worker within the group; it is appended to the client id, which must stay the same across
    restarts of that worker.
    """

    _log = log
    _prefix = "ingest"
    _thread_name = "facmon-ingest"
    _away = "assigned to this worker while it was away"
    _sink_what = "queueing received samples"
    _BATCH_MESSAGES = _BATCH_MESSAGES
    _BATCH_LINGER_S = _BATCH_LINGER_S

    def __init__(
        self,
        config: SiteConfig,
        sink: Callable[[ReadingBatch], None],
        *,
        worker: str = "1",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if config.ingest is None:
            raise ValueError("the site config has no 'ingest' block")
        self.settings: IngestSettings = config.ingest
        s = self.settings
        base = s.client_id or f"facmon-ingest-{config.site.id}"
        self.topic = shared_topic(s)
        self._clock = clock
        self._sites = frozenset(s.sites)
        self._next_log: dict[str, float] = {}
        self._subscribed = False
        super().__init__(
            s,
            f"{base}-{worker}",
            sink,
            session_expiry=s.session_expiry,
            max_pending=s.max_pending,
        )
        self._c: _Counters = _Counters()

    @property
    def subscribed(self) -> bool:
        """Connected, and the broker accepted the subscription of this connection."""
        return self._connected and self._subscribed

    @property
    def stats(self) -> IngestStats:
        with self._lock:
            c = self._c
            return IngestStats(
                connected=self._connected,
                subscribed=self._connected and self._subscribed,
                connects=c.connects,
                received=c.received,
                stored=c.stored,
                samples=c.units,
                acked=c.acked,
                bad=dict(c.bad),
                pending=self._pending(),
                sink_errors=c.sink_errors,
                last_error=c.last_error,
            )

    # -- paho callbacks (network thread) -----------------------------------------------------

    def _subscribing(self) -> str:
        return f", subscribing to {self.topic}"

    def _subscribe(self, client: mqtt.Client) -> None:
        with self._lock:
            self._subscribed = False
        # Every connect: the session may predate a change of the topic or group.
        qos = self.settings.qos
        if self._v5:
            client.subscribe(self.topic, options=SubscribeOptions(qos=qos))
        else:
            client.subscribe(self.topic, qos=qos)

    def _on_subscribe(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reasons: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        if any(rc.is_failure for rc in reasons):
            log.error(
                "ingest: the broker refused the subscription to %s: %s (does it support "
                "shared subscriptions?)",
                self.topic,
                ", ".join(str(rc) for rc in reasons),
            )
            return
        with self._lock:
            self._subscribed = True

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        if self._stopping.is_set():
            return  # not acknowledged: the broker delivers it again after the restart
        generation = self._received()
        batch: ReadingBatch | None = None
        try:
            decoded = decode_batch(msg.payload, self.settings.device_ids)
            if self._sites and decoded.site not in self._sites:
                raise BadBatch("site_not_accepted", f"site {decoded.site!r} is not in ingest.sites")
            batch = decoded.readings
        except BadBatch as e:
            self._bad(msg.topic, e)
        self._enqueue(Queued(batch, msg.mid, msg.qos, generation))

    def _bad(self, topic: str, e: BadBatch) -> None:
        now = self._clock()
        with self._lock:
            self._c.bad[e.reason] = self._c.bad.get(e.reason, 0) + 1
            due = self._next_log.get(e.reason, now)
            if now < due:
                return
            self._next_log[e.reason] = now + _BAD_LOG_EVERY_S
            total = self._c.bad[e.reason]
        log.warning(
            "ingest: dropped a message on %s: %s: %s (%d such so far; logged at most once a "
            "minute)",
            topic,
            e.reason,
            e.detail,
            total,
        )

    # -- writer thread ---------------------------------------------------------------------------

    def _collect(
        self, batch: Sequence[Queued[ReadingBatch | None]]
    ) -> tuple[ReadingBatch | None, int, int]:
        batches = [i.data for i in batch if i.data is not None]
        if not batches:
            return None, 0, 0
        samples = ReadingBatch.concat(batches)
        return samples, len(batches), len(samples)
