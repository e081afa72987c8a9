"""Simulated MQTT sensors: a busbar temperature probe in an electrical shaft and a water leak
probe, publishing JSON over MQTT as such sensors (or their LoRa/4G gateways) do.

A device of the site config is simulated here when its source is ``mqtt`` with a concrete
``topic`` (no wildcards: it is where the sensor publishes) and its ``tags.probe`` names a model
in :data:`PROBES`. Each message is ``{"ts": <ms since the epoch>, "<field>": <value>}`` (the
site's MQTT subscription maps the field to the metric). The values are functions of time alone,
so the back-filled history (:meth:`MqttSensors.readings`, called by
``SimulatedBuilding.history`` at each step) and the live messages (:class:`MqttPublisher`) are
the same series:

* ``busbar_temperature`` (metric ``temperature``, °C): the shaft's air at 26-32 °C over the
  year plus the busbar's rise with the building's load, up to about 16 °C at the evening peak
  of a mall, with a little sensor noise. Well below the 70 °C alarm level of a busbar joint.
* ``water_leak`` (metric ``leak``, 1 = water on the probe): dry, except on about one night in
  nine, from 02:40 to 03:25 local time (a pump room's drain backing up while the tanks refill).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import uuid
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from zoneinfo import ZoneInfo

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from collector.tags import device_tags
from config.models import Device, MqttSource, SiteConfig
from store.reading import Quality, Reading

__all__ = ["PROBES", "MqttPublisher", "MqttSensors", "simulated_by_mqtt"]

log = logging.getLogger(__name__)

_DAY = 86400.0
_LEAK_EVERY_NIGHTS = 9
_LEAK_FROM = 2 * 3600 + 40 * 60  # 02:40 local
_LEAK_UNTIL = 3 * 3600 + 25 * 60  # 03:25 local


def _load(hour: float) -> float:
    """A mall's electrical load over the day, 0.25 at night to 1 in the evening peak."""
    if hour < 8 or hour >= 23:
        return 0.25
    if hour < 10:
        return 0.25 + 0.5 * (hour - 8) / 2
    if hour < 18:
        return 0.75 + 0.15 * (hour - 10) / 8
    if hour < 21:
        return 1.0
    return 1.0 - 0.75 * (hour - 21) / 2


def _busbar(t: float, local: datetime, seed: int) -> float:
    hour = local.hour + local.minute / 60 + local.second / 3600
    season = math.sin(2 * math.pi * (local.timetuple().tm_yday - 110) / 365)
    noise = 0.3 * math.sin(t / 313 + seed) + 0.2 * math.sin(t / 71 + 2 * seed)
    return round(29 + 3 * season + 16 * _load(hour) + noise, 1)


def _leak(t: float, local: datetime, seed: int) -> float:
    night = local.toordinal()
    wet = (night * 7919 + seed * 104729) % _LEAK_EVERY_NIGHTS == 0
    second = local.hour * 3600 + local.minute * 60 + local.second
    return 1.0 if wet and _LEAK_FROM <= second < _LEAK_UNTIL else 0.0


@dataclass(frozen=True)
class _Model:
    metric: str
    field: str  # the JSON field of the message
    unit: str
    value: Callable[[float, datetime, int], float]
    boolean: bool = False  # published as true/false, as leak probes do


PROBES: Mapping[str, _Model] = MappingProxyType(
    {
        "busbar_temperature": _Model("temperature", "t", "°C", _busbar),
        "water_leak": _Model("leak", "leak", "", _leak, boolean=True),
    }
)


def simulated_by_mqtt(device: Device) -> bool:
    """Whether :class:`MqttSensors` simulates ``device`` (an MQTT source with a known probe)."""
    return isinstance(device.source, MqttSource) and device.tags.get("probe") in PROBES


@dataclass(frozen=True)
class _Probe:
    device: Device
    topic: str
    model: _Model
    tags: Mapping[str, str]


class MqttSensors:
    """The site's simulated MQTT sensors (see the module doc); pure functions of time."""

    def __init__(self, config: SiteConfig, seed: int = 1) -> None:
        self.seed = seed
        self._zone = ZoneInfo(config.site.timezone)
        self.probes: list[_Probe] = []
        for d in config.devices:
            if not isinstance(d.source, MqttSource):
                continue
            probe = d.tags.get("probe")
            if probe is None or probe not in PROBES:
                raise ValueError(
                    f"device {d.id!r}: the simulator has no MQTT sensor model for probe "
                    f"{probe!r} (tags.probe: {', '.join(PROBES)})"
                )
            topic = d.source.topic
            if topic is None or "+" in topic or "#" in topic:
                raise ValueError(
                    f"device {d.id!r}: a simulated MQTT sensor needs a concrete source.topic "
                    f"to publish on, not {topic!r}"
                )
            tags = MappingProxyType(device_tags(config.site.id, d))
            self.probes.append(_Probe(d, topic, PROBES[probe], tags))

    def readings(self, at: datetime, metrics: Collection[str] | None = None) -> list[Reading]:
        """Every probe's reading at ``at`` (only those of ``metrics``, when given)."""
        t = at.timestamp()
        local = at.astimezone(self._zone)
        return [
            Reading(
                at.astimezone(UTC),
                p.device.id,
                p.model.metric,
                p.model.value(t, local, self.seed),
                p.model.unit,
                Quality.GOOD,
                p.tags,
            )
            for p in self.probes
            if metrics is None or p.model.metric in metrics
        ]

    def messages(self, at: datetime) -> list[tuple[str, bytes]]:
        """(topic, JSON payload) of every probe at ``at``, as the sensors publish them."""
        t = at.timestamp()
        local = at.astimezone(self._zone)
        out = []
        for p in self.probes:
            value = p.model.value(t, local, self.seed)
            body = {"ts": int(t * 1000), p.model.field: bool(value) if p.model.boolean else value}
            out.append((p.topic, json.dumps(body).encode()))
        return out

    @property
    def interval(self) -> timedelta:
        """How often the sensors publish: the shortest poll interval the config gives them."""
        return min((p.device.poll_interval for p in self.probes), default=timedelta(seconds=5))


class MqttPublisher:
    """Publishes :class:`MqttSensors` to a broker every ``sensors.interval`` (QoS 1) until
    :meth:`stop`; reconnects by itself when the broker goes away."""

    def __init__(self, sensors: MqttSensors, host: str, port: int) -> None:
        self.sensors = sensors
        self.published = 0
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"facmon-sim-{uuid.uuid4().hex[:8]}",
            protocol=MQTTProtocolVersion.MQTTv5,
        )
        self._client.reconnect_delay_set(1, 5)
        self._client.connect_async(host, port)
        self._stop = asyncio.Event()

    async def run(self, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._client.loop_start()
        every = self.sensors.interval.total_seconds()
        try:
            while not self._stop.is_set():
                if self._client.is_connected():
                    for topic, payload in self.sensors.messages(clock()):
                        self._client.publish(topic, payload, qos=1)
                        self.published += 1
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), every)
        finally:
            self._client.disconnect()
            await asyncio.to_thread(self._client.loop_stop)

    def stop(self) -> None:
        self._stop.set()
