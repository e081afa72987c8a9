"""The site configuration, declared once. Every default lives here.

One YAML file describes a site: its buildings, its devices and where they are, and the blocks
for storage, the API, alert rules and on-call. ``config.loader`` reads the file, interpolates
``${ENV}`` secrets and maps validation errors back to file lines.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)

from config.broker import BrokerSettings
from config.durations import Duration
from config.escalation import Escalation
from config.maintenance import Maintenance, resolve_selector
from config.notify import Channel
from config.oncall import Override, Rotation
from config.reporting import Reports, Span, Tariff
from config.uplink import IngestSettings, UplinkSettings

Ident = Annotated[
    str,
    Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$",
        description="Identifier: letters, digits, '_', '-', '.'; at most 64 characters",
    ),
]
DeviceKind = Literal["power_meter", "elevator", "water_meter", "sensor"]
Severity = Literal["critical", "major", "minor", "warning", "info"]
Role = Literal["viewer", "technician", "manager", "admin"]
RESERVED_TAGS = frozenset(
    {"device", "unit", "value", "quality", "time", "site", "building", "floor", "kind", "tenant"}
)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Site(_Model):
    id: Ident = Field(description="Short identifier of the site, used in tags and topics")
    name: str = Field(description="Display name, e.g. 'Riverside Plaza' or '滨江广场'")
    timezone: str = Field(
        default="Asia/Shanghai",
        description="IANA time zone for days, tariffs, night windows and on-call handoffs",
    )
    currency: str = Field(default="CNY", description="Currency for costs in reports")
    language: Literal["zh-CN", "en"] = Field(
        default="zh-CN", description="Default language of messages and reports"
    )

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {v!r} (use an IANA name such as Asia/Shanghai)"
            ) from None
        return v


class Building(_Model):
    id: Ident = Field(description="Building identifier, referenced by device locations")
    name: str = Field(description="Display name of the building")
    floor_area_m2: float = Field(gt=0, description="Gross floor area in m2, for kWh/m2 figures")
    floors: int = Field(ge=1, le=300, description="Number of floors above ground")
    basement_floors: int = Field(default=0, ge=0, le=20, description="Floors below ground")


class Location(_Model):
    building: str = Field(description="Id of a building declared under 'buildings'")
    floor: str = Field(
        default="",
        coerce_numbers_to_str=True,
        description="Floor label as people say it, e.g. 'B1', '12F' (a bare 12 is read as '12')",
    )
    tenant: str | None = Field(default=None, description="Tenant whose use this device meters")


# Mirrors of collector.profile's literals: config does not import the collector, and a test
# keeps the two in step.
OverrideTable = Literal["holding", "input", "coil", "discrete"]
OverrideWordOrder = Literal["ABCD", "DCBA", "BADC", "CDAB"]
OverrideDataType = Literal[
    "bit", "int16", "uint16", "int32", "uint32", "int64", "uint64", "float32", "float64", "string"
]


class RegisterOverride(_Model):
    """Fields of one profile register replaced for one device (firmware that differs).

    Only the fields written are changed; ``null`` clears an optional one (e.g. ``max: null``).
    """

    address: int | None = Field(default=None, ge=0, le=65535, description="Zero-based address")
    table: OverrideTable | None = Field(
        default=None, description="holding | input | coil | discrete"
    )
    type: OverrideDataType | None = Field(default=None, description="Data type of the raw value")
    length: int | None = Field(
        default=None, ge=1, le=125, description="Registers a string spans (strings only)"
    )
    word_order: OverrideWordOrder | None = Field(
        default=None, description="ABCD big-endian, DCBA little-endian, BADC, CDAB words swapped"
    )
    scale: float | None = Field(default=None, description="value = raw * scale + offset")
    offset: float | None = Field(default=None, description="value = raw * scale + offset")
    unit: str | None = Field(default=None, description="Unit of the scaled value, e.g. 'kWh'")
    enum: dict[int, str] | None = Field(
        default=None, description="Names of the raw codes of a state register (replaces all)"
    )
    nan_value: float | None = Field(
        default=None, description="Raw value the device sends for 'no value' (e.g. 65535)"
    )
    min: float | None = Field(default=None, description="Lowest plausible scaled value")
    max: float | None = Field(default=None, description="Highest plausible scaled value")
    max_rate: float | None = Field(
        default=None,
        gt=0,
        description="Counters: highest plausible increase per second in the scaled unit",
    )

    @model_validator(mode="after")
    def _no_null_for_required(self) -> RegisterOverride:
        nulled = sorted(
            name
            for name in self.model_fields_set & _REQUIRED_REGISTER_FIELDS
            if getattr(self, name) is None
        )
        if nulled:
            raise ValueError(f"{', '.join(nulled)} cannot be null (give a value or leave it out)")
        return self

    def changes(self) -> dict[str, Any]:
        """The fields the config sets, explicit nulls included."""
        return self.model_dump(exclude_unset=True)


# Fields every register has; an override may change them but not clear them.
_REQUIRED_REGISTER_FIELDS = frozenset(
    {"address", "table", "type", "word_order", "scale", "offset", "unit"}
)


_PARITY_NAMES = {"NONE": "N", "EVEN": "E", "ODD": "O"}


def _parity(v: Any) -> Any:
    if isinstance(v, str):
        v = v.strip().upper()
        return _PARITY_NAMES.get(v, v)
    return v


class _ModbusSource(_Model):
    """Options every Modbus source has, whatever carries the frames."""

    unit_id: int = Field(default=1, ge=1, le=247, description="Modbus unit (slave) id, 1..247")
    profile: str = Field(
        description="Register map: a profile shipped with facmon (e.g. 'generic_power_meter_3p') "
        "or a path to a profile YAML file"
    )
    timeout: Duration = Field(
        default=timedelta(seconds=1), description="Response timeout for one request"
    )
    retries: int = Field(default=1, ge=0, le=5, description="Retries of a failed request")
    pause_between_requests: Duration = Field(
        default=timedelta(0),
        description="Silence between the end of one answer and the next request on the "
        "connection; on a shared bus or gateway the largest value of its devices applies",
    )
    pause_after_connect: Duration = Field(
        default=timedelta(0),
        description="Wait after (re)connecting before the first request, for gateways that "
        "drop frames sent at once; on a shared connection the largest value applies",
    )
    overrides: dict[str, RegisterOverride] = Field(
        default_factory=dict,
        description="Per-metric changes to the profile's registers for this device, e.g. "
        "{energy_import: {word_order: CDAB}}",
    )
    max_registers_per_read: int = Field(
        default=125, ge=1, le=125, description="Largest read of holding/input registers"
    )
    max_bits_per_read: int = Field(
        default=2000, ge=1, le=2000, description="Largest read of coils/discrete inputs"
    )
    max_gap: int = Field(
        default=10,
        ge=0,
        le=125,
        description="Unused registers a read may span to merge neighbours; 0 for devices "
        "that refuse reads of addresses they do not implement",
    )
    one_request_per_field: bool = Field(
        default=False, description="Read every metric on its own (devices that refuse merging)"
    )

    @field_validator("pause_between_requests", "pause_after_connect")
    @classmethod
    def _sane_pause(cls, v: timedelta) -> timedelta:
        if not timedelta(0) <= v <= timedelta(seconds=10):
            raise ValueError("must be between 0s and 10s")
        return v

    @field_validator("timeout")
    @classmethod
    def _sane_timeout(cls, v: timedelta) -> timedelta:
        if not timedelta(milliseconds=10) <= v <= timedelta(seconds=60):
            raise ValueError("must be between 10ms and 60s")
        return v


# RS-485 devices need an inter-frame gap to turn their line drivers around; 20 ms covers the
# slow ones at 9600 baud (3.5 characters are 4 ms) without costing much.
_RTU_PAUSE = timedelta(milliseconds=20)


class ModbusTcpSource(_ModbusSource):
    type: Literal["modbus_tcp"] = Field(description="Modbus TCP device or gateway")
    host: str = Field(description="Host name or IP address of the device or gateway")
    port: int = Field(default=502, ge=1, le=65535, description="TCP port")


class ModbusRtuOverTcpSource(_ModbusSource):
    type: Literal["modbus_rtu_over_tcp"] = Field(
        description="RTU frames over a TCP socket: a serial-to-Ethernet gateway in transparent "
        "(raw socket) mode"
    )
    host: str = Field(description="Host name or IP address of the gateway")
    port: int = Field(
        ge=1, le=65535, description="TCP port of the gateway's serial channel, e.g. 4001"
    )
    pause_between_requests: Duration = Field(
        default=_RTU_PAUSE,
        description="Silence between the end of one answer and the next request on the bus; "
        "the largest value of the bus's devices applies",
    )


class ModbusRtuSource(_ModbusSource):
    type: Literal["modbus_rtu"] = Field(description="Modbus RTU on a local serial port (RS-485)")
    port: str = Field(
        min_length=1, description="Serial device, e.g. /dev/ttyUSB0 or /dev/serial/by-id/..."
    )
    baudrate: int = Field(default=9600, ge=300, le=921600, description="Bits per second")
    parity: Annotated[Literal["N", "E", "O"], BeforeValidator(_parity)] = Field(
        default="N", description="N (none), E (even) or O (odd)"
    )
    bytesize: Literal[8] = Field(default=8, description="Data bits; Modbus RTU always uses 8")
    stopbits: Literal[1, 2] = Field(default=1, description="Stop bits, 1 or 2")
    pause_between_requests: Duration = Field(
        default=_RTU_PAUSE,
        description="Silence between the end of one answer and the next request on the bus; "
        "the largest value of the bus's devices applies",
    )


ModbusSource = ModbusTcpSource | ModbusRtuOverTcpSource | ModbusRtuSource


def topic_filter_problem(topic: str) -> str | None:
    """Why ``topic`` is not a valid MQTT topic filter, or None when it is."""
    if not topic:
        return "must not be empty"
    if "\x00" in topic:
        return "must not contain NUL characters"
    levels = topic.split("/")
    for i, level in enumerate(levels):
        if "#" in level and (level != "#" or i != len(levels) - 1):
            return "'#' must be a whole level and the last one, e.g. site/#"
        if "+" in level and level != "+":
            return "'+' must be a whole level, e.g. site/+/temp"
    return None


class MqttSource(_Model):
    type: Literal["mqtt"] = Field(
        description="Readings arrive over MQTT (the site's 'mqtt' block says how); declaring the "
        "device lets facmon tag its readings and count messages from undeclared devices"
    )
    topic: str | None = Field(
        default=None,
        description="Accept this device's readings only from topics matching this filter "
        "(+/# wildcards); default: from any subscription",
    )

    @field_validator("topic")
    @classmethod
    def _valid_filter(cls, v: str | None) -> str | None:
        why = None if v is None else topic_filter_problem(v)
        if why:
            raise ValueError(f"topic filter {why}")
        return v


Source = Annotated[ModbusSource | MqttSource, Field(discriminator="type")]


class Device(_Model):
    id: Ident = Field(description="Unique device id; appears in readings, tickets and dashboards")
    name: str = Field(description="Display name, e.g. '1# 配电柜 总表'")
    kind: DeviceKind = Field(description="power_meter | elevator | water_meter | sensor")
    location: Location = Field(description="Where the device is")
    source: Source = Field(description="How facmon reads the device")
    poll_interval: Duration = Field(
        default=timedelta(seconds=10), description="How often the device is read"
    )
    tags: dict[str, str] = Field(
        default_factory=dict, description="Extra tags stored with every reading"
    )
    parent: str | None = Field(
        default=None,
        description="Meter upstream of this one (this is its sub-meter): building totals count "
        "only meters without a parent, and main minus sub-meters is reported as unaccounted",
    )
    ratings: dict[str, float] = Field(
        default_factory=dict,
        description="Rated values (nameplate) that rules take shares of, e.g. {current: 250} "
        "for a 250 A feeder: a rule with above_rating: 0.9 and rating: current trips at 225 A",
    )

    @field_validator("ratings")
    @classmethod
    def _positive_ratings(cls, v: dict[str, float]) -> dict[str, float]:
        bad = sorted(k for k, x in v.items() if not (math.isfinite(x) and x > 0))
        if bad:
            raise ValueError(f"rating(s) {', '.join(bad)} must be positive numbers")
        return v

    @field_validator("tags")
    @classmethod
    def _no_reserved_tags(cls, v: dict[str, str]) -> dict[str, str]:
        # These names carry the reading's identity or location in every store.
        bad = sorted(set(v) & RESERVED_TAGS)
        if bad:
            raise ValueError(
                f"tag name(s) {', '.join(bad)} are reserved ({', '.join(sorted(RESERVED_TAGS))})"
            )
        empty = sorted(k for k, val in v.items() if not val)
        if empty:
            raise ValueError(f"tag(s) {', '.join(empty)} have an empty value")
        return v

    @field_validator("poll_interval")
    @classmethod
    def _sane_interval(cls, v: timedelta) -> timedelta:
        if not timedelta(milliseconds=100) <= v <= timedelta(hours=1):
            raise ValueError("must be between 100ms and 1h")
        return v


class EmbeddedStorage(_Model):
    path: Path | None = Field(
        default=None, description="DuckDB file; default <data_dir>/readings.duckdb"
    )


class InfluxStorage(_Model):
    url: str = Field(description="Base URL, e.g. http://127.0.0.1:8086")
    bucket: str = Field(
        default="facmon",
        description="Bucket (2.x/3.x) or database (1.x) that readings are written to",
    )
    org: str = Field(default="", description="Organisation (2.x); empty for 1.x and 3.x")
    token: SecretStr | None = Field(
        default=None, description="API token (2.x/3.x); use ${INFLUX_TOKEN}, never a literal"
    )
    username: str | None = Field(default=None, description="User name (1.x with auth)")
    password: SecretStr | None = Field(default=None, description="Password (1.x), from ${ENV}")
    timeout: Duration = Field(default=timedelta(seconds=10), description="HTTP request timeout")
    verify_ssl: bool = Field(default=True, description="Verify the server's TLS certificate")
    counter_summaries: bool = Field(
        default=True,
        description="Also write 15-minute summaries of the report counters (energy, water "
        "volume) so that monthly and yearly reports read 1/15 of the rows; every process "
        "writing to the bucket must be facmon with the same setting",
    )


class OutboxSettings(_Model):
    path: Path | None = Field(
        default=None, description="SQLite file of the on-disk outbox; default <data_dir>/outbox.db"
    )
    max_samples: int = Field(
        default=5_000_000,
        ge=1000,
        description="Bound on queued samples; past it the oldest are dropped "
        "(counted, logged once)",
    )
    batch_size: int = Field(
        default=5000,
        ge=1,
        le=100_000,
        description="Samples per store write (the embedded store takes up to 4x that while "
        "catching up on a backlog of 8 batches or more)",
    )
    flush_interval: Duration = Field(
        default=timedelta(seconds=1), description="Longest a sample waits before a write"
    )
    retry_initial: Duration = Field(
        default=timedelta(seconds=1), description="First back-off after a failed write"
    )
    retry_max: Duration = Field(
        default=timedelta(seconds=30), description="Longest back-off between write attempts"
    )


class SelfMetrics(_Model):
    """facmon's own figures (outbox depth, write latency, devices up ...) stored as readings of
    a pseudo-device, for the Grafana health dashboard (facmon.selfmetrics)."""

    enabled: bool = Field(default=True, description="Store facmon's own figures as readings")
    interval: Duration = Field(
        default=timedelta(seconds=30), description="How often they are sampled (5s..1h)"
    )
    device: Ident = Field(
        default="facmon",
        description="Device id they are stored under; no configured device may use it",
    )

    @field_validator("interval")
    @classmethod
    def _sane_interval(cls, v: timedelta) -> timedelta:
        if not timedelta(seconds=5) <= v <= timedelta(hours=1):
            raise ValueError("must be between 5s and 1h")
        return v


class Storage(_Model):
    backend: Literal["embedded", "influxdb"] = Field(
        default="embedded", description="embedded (local DuckDB file) or influxdb"
    )
    embedded: EmbeddedStorage = Field(
        default_factory=EmbeddedStorage, description="Settings of the embedded store"
    )
    influxdb: InfluxStorage | None = Field(
        default=None, description="Settings of InfluxDB; required when backend is influxdb"
    )
    outbox: OutboxSettings = Field(
        default_factory=OutboxSettings, description="The durable queue in front of the store"
    )
    self_metrics: SelfMetrics = Field(
        default_factory=SelfMetrics,
        description="facmon's own health figures, stored as readings of a pseudo-device",
    )

    @model_validator(mode="after")
    def _influx_needs_settings(self) -> Storage:
        if self.backend == "influxdb" and self.influxdb is None:
            raise ValueError("backend 'influxdb' needs an 'influxdb' block")
        return self


class ApiToken(_Model):
    name: str = Field(description="Who or what holds the token, for audit logs")
    token: SecretStr = Field(description="The bearer token; use ${ENV}, never a literal")
    role: Role = Field(default="viewer", description="viewer | technician | manager | admin")


class Api(_Model):
    host: str = Field(default="127.0.0.1", description="Address the API listens on")
    port: int = Field(default=8000, ge=0, le=65535, description="Port the API listens on")
    tokens: list[ApiToken] = Field(
        default_factory=list,
        description="Bearer tokens; FACMON_API_TOKEN, when set, adds an admin token",
    )
    public_url: str | None = Field(
        default=None,
        description="Address people use to reach the console, for links in pages and e-mails "
        "(e.g. https://facmon.example.com); default http://<host>:<port>",
    )


TicketPriority = Literal["P1", "P2", "P3"]


def _positive(v: timedelta) -> timedelta:
    if v <= timedelta(0):
        raise ValueError("a service level must be longer than 0s")
    return v


ServiceLevel = Annotated[Duration, AfterValidator(_positive)]


def _default_sla() -> dict[TicketPriority, timedelta]:
    return {"P1": timedelta(hours=4), "P2": timedelta(hours=24), "P3": timedelta(hours=72)}


class Tickets(_Model):
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL of the ticket database; default sqlite in <data_dir>",
    )
    sla: dict[TicketPriority, ServiceLevel] = Field(
        default_factory=_default_sla,
        description="Time from a ticket's creation to 'resolved' that counts as on time (T1, "
        "T6), per priority; priorities left out keep 4h / 24h / 72h",
    )
    sla_by_class: dict[str, dict[TicketPriority, ServiceLevel]] = Field(
        default_factory=dict,
        description="Exceptions per fault class, e.g. {entrapment: {P1: 1h}}; priorities left "
        "out take 'sla'",
    )
    reopen_window: Duration = Field(
        default=timedelta(hours=24),
        description="A new episode this soon after its ticket was resolved or closed reopens "
        "that ticket as a repeat repair (D4); later ones open a new ticket",
    )
    max_shelve: Duration = Field(
        default=timedelta(hours=24),
        description="Longest an alert can be shelved at once (A11): a shelve must end no later "
        "than this after it is made; between 1m and 30d",
    )
    max_silence: Duration = Field(
        default=timedelta(days=30),
        description="Longest a silence or maintenance window can last, so a forgotten one "
        "still ends; between 1m and 366d",
    )

    @field_validator("max_shelve")
    @classmethod
    def _sane_shelve(cls, v: timedelta) -> timedelta:
        if not timedelta(minutes=1) <= v <= timedelta(days=30):
            raise ValueError("must be between 1m and 30d")
        return v

    @field_validator("max_silence")
    @classmethod
    def _sane_silence(cls, v: timedelta) -> timedelta:
        if not timedelta(minutes=1) <= v <= timedelta(days=366):
            raise ValueError("must be between 1m and 366d")
        return v


class Selector(_Model):
    kinds: list[DeviceKind] = Field(default_factory=list, description="Match these device kinds")
    buildings: list[str] = Field(default_factory=list, description="Match these building ids")
    devices: list[str] = Field(default_factory=list, description="Match these device ids")
    tags: dict[str, str] = Field(default_factory=dict, description="Match devices with these tags")

    def matches(self, device: Device) -> bool:
        """Whether this selector covers ``device``; an empty list or mapping matches all."""
        return (
            (not self.kinds or device.kind in self.kinds)
            and (not self.buildings or device.location.building in self.buildings)
            and (not self.devices or device.id in self.devices)
            and all(device.tags.get(k) == v for k, v in self.tags.items())
        )


resolve_selector(Selector)  # maintenance schedules select devices as rules do


# Rule id of the built-in communication-loss alert (A8); configured rules cannot take it.
COMMUNICATION_LOSS_RULE = "communication_loss"
# Rule id of the built-in alert of a gateway or serial bus whose devices all fell silent (A8).
GATEWAY_OFFLINE_RULE = "gateway_offline"

RuleKind = Literal["threshold", "rate", "state", "night_flow"]
# A rule without 'kind' is a threshold rule: configs written before the other kinds load as
# they always did.
DEFAULT_RULE_KIND = "threshold"


class _RuleBase(_Model):
    """What every alert rule has: identity, the devices it watches and the state machine's
    timing (../shared/alerting-semantics.md A1-A12)."""

    id: Ident = Field(description="Rule id; part of the alert fingerprint")
    name: str = Field(description="Text shown in alerts and tickets")
    metric: str = Field(description="Metric the rule watches, e.g. 'fault_code'")
    select: Selector = Field(default_factory=Selector, description="Devices the rule applies to")
    for_: Duration = Field(
        default=timedelta(0), alias="for", description="Condition must hold this long to fire"
    )
    keep_firing_for: Duration = Field(
        default=timedelta(0),
        description="After the clear level is reached, the alert stays RECOVERING this long and "
        "a new trip meanwhile continues the same episode; 0 resolves at once",
    )
    stale_after: Duration | None = Field(
        default=None,
        description="No sample of the metric for this long: the alert shows NODATA (missing "
        "data never resolves it); default 2 x the device's poll interval",
    )
    severity: Severity = Field(default="major", description="critical | major | minor | ...")
    fault_class: str = Field(
        description="Fault class of the ticket it opens, e.g. 'elevator_fault'"
    )
    latched: bool = Field(
        default=False,
        description="After the condition clears the alert stays visible (RECOVERING) until a "
        "person acknowledges the return to normal, e.g. entrapment or over-temperature",
    )

    @field_validator("id")
    @classmethod
    def _not_reserved(cls, v: str) -> str:
        if v == COMMUNICATION_LOSS_RULE:
            raise ValueError(f"rule id {v!r} is reserved for the built-in communication-loss alert")
        if v == GATEWAY_OFFLINE_RULE:
            raise ValueError(f"rule id {v!r} is reserved for the built-in gateway-offline alert")
        return v

    @field_validator("keep_firing_for", "for_")
    @classmethod
    def _sane_hold(cls, v: timedelta) -> timedelta:
        if not timedelta(0) <= v <= timedelta(days=7):
            raise ValueError("must be between 0s and 7d")
        return v

    @field_validator("stale_after")
    @classmethod
    def _sane_stale(cls, v: timedelta | None) -> timedelta | None:
        if v is not None and not timedelta(seconds=1) <= v <= timedelta(days=1):
            raise ValueError("must be between 1s and 1d")
        return v


def _check_levels(
    above: float | None,
    below: float | None,
    clear: float | None,
    deadband: float | None,
    names: tuple[str, str] = ("above", "below"),
) -> None:
    """One trip level and a clear level on its normal side (hysteresis, A4)."""
    hi, lo = names
    if (above is None) == (below is None):
        raise ValueError(f"give exactly one of '{hi}' or '{lo}'")
    if clear is not None and deadband is not None:
        raise ValueError("give either 'clear' or 'deadband', not both")
    if clear is not None:
        if above is not None and clear > above:
            raise ValueError(f"clear ({clear}) must not be above '{hi}' ({above})")
        if below is not None and clear < below:
            raise ValueError(f"clear ({clear}) must not be below '{lo}' ({below})")


def _clear_of(trip: float, high: bool, clear: float | None, deadband: float | None) -> float:
    if clear is not None:
        return clear
    return trip - (deadband or 0.0) if high else trip + (deadband or 0.0)


class ThresholdRule(_RuleBase):
    """Trips when a metric goes above (or below) a level, absolute or a share of the device's
    rating (``above_rating: 0.9`` with ``ratings: {current: 250}`` on the device trips above
    225)."""

    kind: Literal["threshold"] = Field(
        default="threshold",
        description="threshold (the default when 'kind' is left out) | rate | state | night_flow",
    )
    above: float | None = Field(default=None, description="Trip when the value exceeds this")
    below: float | None = Field(default=None, description="Trip when the value falls below this")
    clear: float | None = Field(
        default=None,
        description="Clear level (hysteresis); default: the trip level minus 'deadband' for "
        "'above', plus 'deadband' for 'below'",
    )
    deadband: float | None = Field(
        default=None,
        ge=0,
        description="Distance of the default clear level from the trip level; not together "
        "with 'clear'; default 0",
    )
    above_rating: float | None = Field(
        default=None,
        gt=0,
        description="Trip when the value exceeds this share of the device's rating (see "
        "'rating'), e.g. 0.9 for 90 %; every selected device needs that rating",
    )
    below_rating: float | None = Field(
        default=None, gt=0, description="Trip when the value falls below this share of the rating"
    )
    clear_rating: float | None = Field(
        default=None,
        gt=0,
        description="Clear level as a share of the rating (with above_rating/below_rating); "
        "default: the trip share",
    )
    rating: str | None = Field(
        default=None,
        min_length=1,
        description="Which of the device's 'ratings' the *_rating levels are shares of, e.g. "
        "'current' for all three phase currents; default: the metric name",
    )

    @model_validator(mode="after")
    def _one_limit(self) -> ThresholdRule:
        given = [
            n
            for n in ("above", "below", "above_rating", "below_rating")
            if getattr(self, n) is not None
        ]
        if len(given) != 1:
            if not {"above_rating", "below_rating"} & set(given):
                raise ValueError("give exactly one of 'above' or 'below'")
            raise ValueError(
                "give exactly one of 'above', 'below', 'above_rating' or 'below_rating'"
            )
        if self.rated:
            if self.clear is not None or self.deadband is not None:
                raise ValueError("with a *_rating level give the clear level as 'clear_rating'")
            share = self.above_rating if self.above_rating is not None else self.below_rating
            c = self.clear_rating
            if c is not None and share is not None:
                if self.above_rating is not None and c > share:
                    raise ValueError(f"clear_rating ({c}) must not be above above_rating ({share})")
                if self.below_rating is not None and c < share:
                    raise ValueError(f"clear_rating ({c}) must not be below below_rating ({share})")
            return self
        if self.clear_rating is not None or self.rating is not None:
            raise ValueError("'clear_rating' and 'rating' go with above_rating or below_rating")
        _check_levels(self.above, self.below, self.clear, self.deadband)
        return self

    @property
    def rated(self) -> bool:
        """Whether the levels are shares of a device rating."""
        return self.above_rating is not None or self.below_rating is not None

    @property
    def rating_key(self) -> str:
        """The device rating the *_rating levels refer to."""
        return self.rating or self.metric

    @property
    def high(self) -> bool:
        return self.above is not None or self.above_rating is not None

    @property
    def trip_level(self) -> float:
        """The absolute trip level (not for rated rules: see :meth:`levels`)."""
        level = self.above if self.above is not None else self.below
        if level is None:
            raise ValueError(f"rule {self.id!r}: its levels depend on the device rating")
        return level

    @property
    def clear_level(self) -> float:
        """The level that ends the condition (A4); absolute rules only."""
        return _clear_of(self.trip_level, self.high, self.clear, self.deadband)

    def levels(self, ratings: Mapping[str, float]) -> tuple[float, float]:
        """(trip, clear) for a device with ``ratings``; KeyError when a rated rule's rating
        is missing."""
        if not self.rated:
            return self.trip_level, self.clear_level
        rated = ratings[self.rating_key]
        share = self.above_rating if self.above_rating is not None else self.below_rating
        assert share is not None
        clear = self.clear_rating if self.clear_rating is not None else share
        return share * rated, clear * rated


class RateRule(_RuleBase):
    """Trips when a metric changes faster than a rate: the change between the oldest and the
    newest sample within ``window``, scaled to ``per`` (e.g. a shaft warming 5 °C a minute)."""

    kind: Literal["rate"] = Field(description="Rate of change of the metric")
    rate_above: float | None = Field(
        default=None,
        description="Trip when the value rises faster than this per 'per' (e.g. 5 for +5/min)",
    )
    rate_below: float | None = Field(
        default=None,
        description="Trip when the rate falls below this per 'per'; negative for a fall "
        "(e.g. -5 for dropping faster than 5/min)",
    )
    clear: float | None = Field(
        default=None,
        description="Clear rate (hysteresis); default: the trip rate minus 'deadband' for "
        "'rate_above', plus 'deadband' for 'rate_below'",
    )
    deadband: float | None = Field(
        default=None, ge=0, description="Distance of the default clear rate from the trip rate"
    )
    per: Duration = Field(
        default=timedelta(minutes=1), description="Time unit of the rates, e.g. 1m or 1h"
    )
    window: Duration = Field(
        default=timedelta(minutes=5),
        description="The rate is measured over the samples of this trailing window; it is "
        "judged once they span at least half of it",
    )

    @field_validator("per", "window")
    @classmethod
    def _sane_span(cls, v: timedelta) -> timedelta:
        if not timedelta(seconds=1) <= v <= timedelta(days=1):
            raise ValueError("must be between 1s and 1d")
        return v

    @model_validator(mode="after")
    def _one_limit(self) -> RateRule:
        names = ("rate_above", "rate_below")
        _check_levels(self.rate_above, self.rate_below, self.clear, self.deadband, names)
        return self

    @property
    def high(self) -> bool:
        return self.rate_above is not None

    @property
    def trip_level(self) -> float:
        level = self.rate_above if self.rate_above is not None else self.rate_below
        assert level is not None  # the validator requires exactly one
        return level

    @property
    def clear_level(self) -> float:
        return _clear_of(self.trip_level, self.high, self.clear, self.deadband)


def _state_values(v: Any) -> Any:
    if isinstance(v, list):
        for x in v:
            if isinstance(x, bool):
                raise ValueError(
                    "write state names in quotes, e.g. ['yes'] (YAML reads unquoted yes/no/on/off "
                    "as true/false)"
                )
    return v


StateValues = Annotated[list[int | str], BeforeValidator(_state_values)]


class StateRule(_RuleBase):
    """Trips while a state metric (an enum register such as the elevator's service mode) is in
    (or not in) a set of states, named as the device profile names them or given as codes."""

    kind: Literal["state"] = Field(description="State (enum) match")
    in_: StateValues | None = Field(
        default=None,
        alias="in",
        min_length=1,
        description="Trip while the state is one of these: names from the profile's enum "
        "(e.g. out_of_service) or raw codes (e.g. 7)",
    )
    not_in: StateValues | None = Field(
        default=None,
        min_length=1,
        description="Trip while the state is none of these (names or codes)",
    )

    @model_validator(mode="after")
    def _one_set(self) -> StateRule:
        if (self.in_ is None) == (self.not_in is None):
            raise ValueError("give exactly one of 'in' or 'not_in'")
        return self

    @property
    def values(self) -> list[int | str]:
        """The states listed, whichever of in/not_in holds them."""
        return list(self.in_ if self.in_ is not None else self.not_in or [])


class NightFlowRule(_RuleBase):
    """A water leak by minimum night flow (../shared/domain.md "Water leaks"), decided once a
    night. Settings left out take the site's ``reports.water`` values, so the alert and the
    water report agree."""

    kind: Literal["night_flow"] = Field(description="Water leak by minimum night flow")
    metric: str = Field(default="flow_rate", description="Flow rate metric (m3/h)")
    night: Span | None = Field(
        default=None,
        description="Local window of the minimum night flow, e.g. '02:00-04:00'; default: "
        "reports.water.night",
    )
    rolling: Duration | None = Field(
        default=None,
        description="Averaging window of the night flow (60m); default: reports.water.rolling",
    )
    above: float | None = Field(
        default=None,
        ge=0,
        description="A night is high when its MNF exceeds this (m3/h) or the ratio level; "
        "default: reports.water.threshold_m3h",
    )
    ratio: float | None = Field(
        default=None,
        ge=0,
        description="... or this fraction of the previous day's mean flow, if higher; "
        "default: reports.water.ratio",
    )
    leak_nights: int | None = Field(
        default=None, ge=1, description="High nights in a row that trip; default 3 (reports)"
    )
    no_zero_window: Span | None = Field(
        default=None,
        description="Local window in which the flow must touch zero; default: "
        "reports.water.no_zero_window (00:00-06:00)",
    )
    no_zero_nights: int | None = Field(
        default=None,
        ge=1,
        description="Nights in a row without zero flow that trip; default 2 (reports)",
    )
    clear_nights: int | None = Field(
        default=None, ge=1, description="Clean nights in a row that clear; default 2 (reports)"
    )
    gap_polls: float | None = Field(
        default=None,
        gt=0,
        description="A flow sample covers at most this many poll intervals; default: "
        "reports.water.gap_polls",
    )

    @field_validator("rolling")
    @classmethod
    def _sane_rolling(cls, v: timedelta | None) -> timedelta | None:
        if v is not None and not timedelta(minutes=1) <= v <= timedelta(hours=12):
            raise ValueError("must be between 1m and 12h")
        return v

    @field_validator("for_")
    @classmethod
    def _nights_not_for(cls, v: timedelta) -> timedelta:
        if v != timedelta(0):
            raise ValueError("a night_flow rule counts nights: use 'leak_nights', not 'for'")
        return v


def _default_kind(v: Any) -> Any:
    if isinstance(v, dict) and "kind" not in v:
        return {**v, "kind": DEFAULT_RULE_KIND}
    return v


AnyRule = ThresholdRule | RateRule | StateRule | NightFlowRule
Rule = Annotated[AnyRule, Field(discriminator="kind"), BeforeValidator(_default_kind)]


class Person(_Model):
    id: Ident = Field(description="Person id, referenced by rotations")
    name: str = Field(description="Display name")
    phone: str | None = Field(
        default=None, coerce_numbers_to_str=True, description="Phone number for SMS/voice"
    )
    email: str | None = Field(default=None, description="E-mail address")
    language: Literal["zh-CN", "en"] | None = Field(
        default=None, description="Language of messages to this person; default: the site's"
    )
    contacts: list[str] = Field(
        default_factory=list,
        description="Ids of the channels (under 'channels') that reach this person, e.g. "
        "[wecom-ops, mail]; an e-mail channel needs 'email'",
    )


class OnCall(_Model):
    people: list[Person] = Field(default_factory=list, description="Technicians who can be paged")
    fallback: str | None = Field(
        default=None, description="Person id paged when no rotation covers the time"
    )
    rotations: list[Rotation] = Field(
        default_factory=list,
        description="Who is on call when: members take turns, handing off daily or weekly",
    )
    overrides: list[Override] = Field(
        default_factory=list,
        description="Times someone else is on call instead (holidays, swaps); they beat the "
        "rotations",
    )


MQTT_TEMPLATE_FIELD = re.compile(r"^\{([A-Za-z_][A-Za-z0-9_]*)\}$")
MqttFormat = Literal["json", "number", "influx_line"]


class MqttField(_Model):
    path: str = Field(
        min_length=1,
        description="Where the value is in the JSON payload, dot notation for nested objects "
        "(e.g. 'sensors.temp'); a list index is a number ('probes.0.t')",
    )
    unit: str | None = Field(default=None, description="Unit of the value, e.g. '°C'")


class MqttSubscription(_Model):
    topic: str = Field(description="Topic filter to subscribe to, e.g. 'site/+/+/temperature'")
    qos: Literal[0, 1, 2] = Field(
        default=1,
        description="0 at most once, 1 at least once (acknowledged after the readings are on "
        "disk; the safe choice), 2 exactly once on the wire",
    )
    template: str | None = Field(
        default=None,
        description="Names for topic levels, e.g. 'site/{building}/{device}/{metric}': "
        "{device} and {metric} bind the level to the device id and metric name",
    )
    format: MqttFormat = Field(
        default="json", description="Payload format: json | number | influx_line"
    )
    device: Ident | None = Field(
        default=None,
        description="Device id of every message, when neither the topic nor the payload names it",
    )
    device_field: str | None = Field(
        default=None, description="JSON: path of the device id in the payload (dot notation)"
    )
    metric: str | None = Field(
        default=None, description="number: metric name when the template has no {metric}"
    )
    fields: dict[str, str | MqttField] = Field(
        default_factory=dict,
        description="JSON: metric -> value path (dot notation), or {path, unit}; several "
        "metrics per message",
    )
    unit: str = Field(default="", description="Unit of metrics that do not name their own")
    units: dict[str, str] = Field(
        default_factory=dict, description="Unit per metric (number and influx_line formats)"
    )
    timestamp_field: str | None = Field(
        default=None,
        description="JSON: path of the sample time; default: the time facmon received it",
    )
    timestamp_unit: Literal["s", "ms", "iso8601"] = Field(
        default="s",
        description="Unit of timestamp_field: s or ms since 1970 (UTC), or ISO 8601 text "
        "(without an offset it is read in the site's time zone)",
    )
    line_metric: Literal["field", "measurement"] = Field(
        default="field",
        description="influx_line: each field key is a metric (field), or the measurement "
        "name is the metric of a one-field line (measurement)",
    )
    line_device_tag: str = Field(
        default="device", description="influx_line: tag that holds the device id"
    )
    line_precision: Literal["ns", "us", "ms", "s"] = Field(
        default="ns", description="influx_line: unit of the line timestamps"
    )
    max_future: Duration = Field(
        default=timedelta(minutes=10),
        description="Samples stamped further ahead of facmon's clock are refused (bad clock)",
    )
    max_age: Duration = Field(
        default=timedelta(days=7), description="Samples stamped longer ago than this are refused"
    )

    @field_validator("topic")
    @classmethod
    def _valid_filter(cls, v: str) -> str:
        why = topic_filter_problem(v)
        if why:
            raise ValueError(f"topic filter {why}")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> MqttSubscription:
        names: list[str] = []
        if self.template is not None:
            levels = self.template.split("/")
            filt = self.topic.split("/")
            for level in levels:
                m = MQTT_TEMPLATE_FIELD.match(level)
                if m:
                    names.append(m.group(1))
                elif "{" in level or "}" in level or "+" in level or "#" in level:
                    raise ValueError(f"template level {level!r} must be plain text or one {{name}}")
            if len(set(names)) != len(names):
                raise ValueError("template names a level twice")
            if filt[-1] != "#" and len(levels) != len(filt):
                raise ValueError(
                    f"template has {len(levels)} levels but topic {self.topic!r} has {len(filt)}"
                )
        has_device = "device" in names or self.device is not None
        has_metric = "metric" in names
        if self.format == "json":
            if not self.fields:
                raise ValueError("format json needs 'fields' (metric: path in the payload)")
            if not (has_device or self.device_field):
                raise ValueError(
                    "format json needs the device: {device} in the template, 'device' or "
                    "'device_field'"
                )
        elif self.format == "number":
            if not (has_metric or self.metric):
                raise ValueError("format number needs {metric} in the template or 'metric'")
            if not has_device:
                raise ValueError("format number needs {device} in the template or 'device'")
        if self.format != "json":
            unused = [n for n in ("fields", "device_field", "timestamp_field") if getattr(self, n)]
            if unused:
                raise ValueError(f"{', '.join(unused)} only apply to format json")
        if self.max_future < timedelta(0) or self.max_age <= timedelta(0):
            raise ValueError("max_future must be >= 0 and max_age > 0")
        return self


class MqttSettings(BrokerSettings):
    """The MQTT collector: the broker connection and what to subscribe to."""

    client_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        description="Client id; must stay the same across restarts for the persistent "
        "session; default facmon-<site id>",
    )
    password: SecretStr | None = Field(
        default=None, description="Password; use ${MQTT_PASSWORD}, never a literal"
    )
    session_expiry: Duration = Field(
        default=timedelta(days=1),
        description="How long the broker keeps the session (and queues QoS 1/2 messages) "
        "while facmon is away (MQTT 5; 3.1.1 brokers use their own setting)",
    )
    max_pending: int = Field(
        default=10_000,
        ge=1,
        le=1_000_000,
        description="Messages received but not yet stored; past it facmon stops reading from "
        "the broker until the store catches up (back-pressure)",
    )
    subscriptions: list[MqttSubscription] = Field(
        min_length=1, description="Topics to subscribe to and how to read their messages"
    )


class Grafana(_Model):
    """Where the site's Grafana dashboards live (``facmon grafana export|push``)."""

    url: str | None = Field(
        default=None,
        description="Address people open Grafana at, e.g. https://grafana.example.com; links "
        "from a ticket to its device's panel use it; default: no links",
    )
    folder: str | None = Field(
        default=None, description="Title of the site's dashboard folder; default: the site name"
    )
    datasource_env_prefix: str = Field(
        default="INFLUX",
        pattern=r"^[A-Z][A-Z0-9_]*$",
        description="Grafana's provisioning files read the datasource's URL, bucket (1.x: "
        "database) and token from its environment variables <prefix>_URL, <prefix>_BUCKET and "
        "<prefix>_TOKEN (<prefix>_USER and <prefix>_PASSWORD for 1.x)",
    )


class SiteConfig(_Model):
    site: Site = Field(description="The site")
    buildings: list[Building] = Field(min_length=1, description="Buildings of the site")
    devices: list[Device] = Field(default_factory=list, description="Devices facmon reads")
    data_dir: Path = Field(
        default=Path("facmon-data"),
        description="Directory for local files; relative to the config file's directory",
    )
    storage: Storage = Field(default_factory=Storage, description="Where readings are stored")
    api: Api = Field(default_factory=Api, description="The HTTP API")
    tickets: Tickets = Field(default_factory=Tickets, description="The ticket database")
    rules: list[Rule] = Field(
        default_factory=list,
        description="Alert rules, each of a 'kind': threshold (the default), rate, state or "
        "night_flow",
    )
    default_rules: bool = Field(
        default=False,
        description="Also apply facmon's shipped default rules (alerts/default_rules.yaml: shaft "
        "over-temperature, phase current over rating, elevator fault, entrapment and out of "
        "service, night-flow leak); a site rule with the same id replaces the default one",
    )
    oncall: OnCall = Field(default_factory=OnCall, description="Who gets paged")
    channels: list[Channel] = Field(
        default_factory=list,
        description="How notifications are delivered: webhook, wecom, dingtalk, feishu, email "
        "or mqtt; people list the ids that reach them in 'contacts'",
    )
    escalation: Escalation = Field(
        default_factory=Escalation, description="Who is paged about a ticket, and when (E1-E8)"
    )
    mqtt: MqttSettings | None = Field(
        default=None, description="MQTT broker and subscriptions; omit when nothing uses MQTT"
    )
    uplink: UplinkSettings | None = Field(
        default=None,
        description="Edge role: also publish every stored sample to a central broker "
        "(buffered on disk while it is unreachable); omit for a standalone site",
    )
    ingest: IngestSettings | None = Field(
        default=None,
        description="Central role: where `facmon ingest` workers read the edges' batches",
    )
    tariffs: list[Tariff] = Field(
        default_factory=list, description="Electricity tariffs (time-of-use, versioned)"
    )
    reports: Reports = Field(default_factory=Reports, description="Report settings")
    grafana: Grafana = Field(
        default_factory=Grafana, description="Grafana dashboards generated from this config"
    )
    maintenance: Maintenance = Field(
        default_factory=Maintenance,
        description="Preventive maintenance schedules (T8): recurring jobs that open tickets",
    )

    # Paths with their defaults resolved against data_dir.
    @property
    def embedded_path(self) -> Path:
        return self.storage.embedded.path or self.data_dir / "readings.duckdb"

    @property
    def outbox_path(self) -> Path:
        return self.storage.outbox.path or self.data_dir / "outbox.db"

    @property
    def uplink_buffer_path(self) -> Path:
        path = None if self.uplink is None else self.uplink.buffer_path
        return path or self.data_dir / "uplink.db"

    @property
    def tickets_url(self) -> str:
        return self.tickets.database_url or f"sqlite:///{self.data_dir / 'tickets.db'}"

    @property
    def rollup_dir(self) -> Path:
        return self.data_dir / "counter-summaries"

    @property
    def report_counters(self) -> frozenset[str]:
        """The counters reports read month by month: what InfluxDB keeps summaries of."""
        return frozenset({self.reports.energy.metric, self.reports.water.metric})

    def device(self, device_id: str) -> Device:
        for d in self.devices:
            if d.id == device_id:
                return d
        raise KeyError(device_id)
