"""The site configuration, declared once. Every default lives here.

One YAML file describes a site: its buildings, its devices and where they are, and the blocks
for storage, the API, alert rules and on-call. ``config.loader`` reads the file, interpolates
``${ENV}`` secrets and maps validation errors back to file lines.
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)

from config.durations import Duration
from config.reporting import Reports, Tariff

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
    batch_size: int = Field(default=5000, ge=1, le=100_000, description="Samples per store write")
    flush_interval: Duration = Field(
        default=timedelta(seconds=1), description="Longest a sample waits before a write"
    )
    retry_initial: Duration = Field(
        default=timedelta(seconds=1), description="First back-off after a failed write"
    )
    retry_max: Duration = Field(
        default=timedelta(seconds=30), description="Longest back-off between write attempts"
    )


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


class Tickets(_Model):
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL of the ticket database; default sqlite in <data_dir>",
    )


class Selector(_Model):
    kinds: list[DeviceKind] = Field(default_factory=list, description="Match these device kinds")
    buildings: list[str] = Field(default_factory=list, description="Match these building ids")
    devices: list[str] = Field(default_factory=list, description="Match these device ids")
    tags: dict[str, str] = Field(default_factory=dict, description="Match devices with these tags")


# Rule id of the built-in communication-loss alert (A8); configured rules cannot take it.
COMMUNICATION_LOSS_RULE = "communication_loss"


class ThresholdRule(_Model):
    id: Ident = Field(description="Rule id; part of the alert fingerprint")
    name: str = Field(description="Text shown in alerts and tickets")
    metric: str = Field(description="Metric the rule watches, e.g. 'fault_code'")
    select: Selector = Field(default_factory=Selector, description="Devices the rule applies to")
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

    @model_validator(mode="after")
    def _one_limit(self) -> ThresholdRule:
        if (self.above is None) == (self.below is None):
            raise ValueError("give exactly one of 'above' or 'below'")
        if self.clear is not None and self.deadband is not None:
            raise ValueError("give either 'clear' or 'deadband', not both")
        # The clear level sits on the normal side of the trip level (hysteresis, A4).
        if self.clear is not None:
            if self.above is not None and self.clear > self.above:
                raise ValueError(f"clear ({self.clear}) must not be above 'above' ({self.above})")
            if self.below is not None and self.clear < self.below:
                raise ValueError(f"clear ({self.clear}) must not be below 'below' ({self.below})")
        return self

    @property
    def trip_level(self) -> float:
        level = self.above if self.above is not None else self.below
        assert level is not None  # the validator requires exactly one of above/below
        return level

    @property
    def clear_level(self) -> float:
        """The level that ends the condition (A4)."""
        if self.clear is not None:
            return self.clear
        deadband = self.deadband or 0.0
        if self.above is not None:
            return self.above - deadband
        return self.trip_level + deadband


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


class OnCall(_Model):
    people: list[Person] = Field(default_factory=list, description="Technicians who can be paged")
    fallback: str | None = Field(
        default=None, description="Person id paged when no rotation covers the time"
    )


MQTT_TEMPLATE_FIELD = re.compile(r"^\{([A-Za-z_][A-Za-z0-9_]*)\}$")
MqttFormat = Literal["json", "number", "influx_line"]


def _protocol(v: Any) -> Any:
    # YAML reads `protocol: 5` as a number and `protocol: 3.1.1` as text.
    return str(v) if isinstance(v, int | float) and not isinstance(v, bool) else v


class MqttTls(_Model):
    ca_file: Path | None = Field(
        default=None, description="CA certificates (PEM) to verify the broker; default: system"
    )
    cert_file: Path | None = Field(
        default=None, description="Client certificate (PEM), for brokers that require one"
    )
    key_file: Path | None = Field(default=None, description="Private key of the client certificate")
    verify: bool = Field(
        default=True,
        description="Verify the broker's certificate and host name; turn off only for testing",
    )


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


class MqttSettings(_Model):
    host: str = Field(description="Broker host name or IP address")
    port: int = Field(default=1883, ge=1, le=65535, description="Broker port (8883 for TLS)")
    protocol: Annotated[Literal["3.1.1", "5"], BeforeValidator(_protocol)] = Field(
        default="5", description="MQTT protocol version: 3.1.1 or 5"
    )
    client_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        description="Client id; must stay the same across restarts for the persistent "
        "session; default facmon-<site id>",
    )
    username: str | None = Field(default=None, description="User name, if the broker needs one")
    password: SecretStr | None = Field(
        default=None, description="Password; use ${MQTT_PASSWORD}, never a literal"
    )
    tls: MqttTls | None = Field(default=None, description="TLS settings; omit for plain TCP")
    keepalive: Duration = Field(
        default=timedelta(seconds=60), description="Keep-alive interval of the connection"
    )
    session_expiry: Duration = Field(
        default=timedelta(days=1),
        description="How long the broker keeps the session (and queues QoS 1/2 messages) "
        "while facmon is away (MQTT 5; 3.1.1 brokers use their own setting)",
    )
    reconnect_min: Duration = Field(
        default=timedelta(seconds=1), description="First wait before reconnecting"
    )
    reconnect_max: Duration = Field(
        default=timedelta(seconds=60), description="Longest wait between reconnect attempts"
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

    @field_validator("keepalive")
    @classmethod
    def _sane_keepalive(cls, v: timedelta) -> timedelta:
        if not timedelta(seconds=5) <= v <= timedelta(seconds=65535):
            raise ValueError("must be between 5s and 65535s")
        return v

    @field_validator("reconnect_min", "reconnect_max")
    @classmethod
    def _sane_backoff(cls, v: timedelta) -> timedelta:
        if not timedelta(seconds=1) <= v <= timedelta(hours=1):
            raise ValueError("must be between 1s and 1h (whole seconds)")
        return v

    @model_validator(mode="after")
    def _ordered(self) -> MqttSettings:
        if self.reconnect_min > self.reconnect_max:
            raise ValueError("reconnect_min must not exceed reconnect_max")
        return self


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
    rules: list[ThresholdRule] = Field(default_factory=list, description="Alert rules")
    oncall: OnCall = Field(default_factory=OnCall, description="Who gets paged")
    mqtt: MqttSettings | None = Field(
        default=None, description="MQTT broker and subscriptions; omit when nothing uses MQTT"
    )
    tariffs: list[Tariff] = Field(
        default_factory=list, description="Electricity tariffs (time-of-use, versioned)"
    )
    reports: Reports = Field(default_factory=Reports, description="Report settings")

    # Paths with their defaults resolved against data_dir.
    @property
    def embedded_path(self) -> Path:
        return self.storage.embedded.path or self.data_dir / "readings.duckdb"

    @property
    def outbox_path(self) -> Path:
        return self.storage.outbox.path or self.data_dir / "outbox.db"

    @property
    def tickets_url(self) -> str:
        return self.tickets.database_url or f"sqlite:///{self.data_dir / 'tickets.db'}"

    def device(self, device_id: str) -> Device:
        for d in self.devices:
            if d.id == device_id:
                return d
        raise KeyError(device_id)
