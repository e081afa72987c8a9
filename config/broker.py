"""How facmon reaches an MQTT broker, declared once for every block that connects to one.

The ``mqtt`` collector, the ``uplink`` and ``ingest`` roles (config.uplink) share
:class:`BrokerSettings`; the ``mqtt`` notification channel (config.notify) shares the TLS block
and the protocol field. Kept apart from ``config.models`` so those modules, which
``config.models`` imports, can use it without an import cycle.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

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

__all__ = ["BrokerSettings", "MqttProtocol", "MqttTls"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def _protocol(v: Any) -> Any:
    # YAML reads `protocol: 5` as a number and `protocol: 3.1.1` as text.
    return str(v) if isinstance(v, int | float) and not isinstance(v, bool) else v


MqttProtocol = Annotated[Literal["3.1.1", "5"], BeforeValidator(_protocol)]
"""The MQTT protocol version a client speaks, as written in YAML (``5`` or ``3.1.1``)."""


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


class BrokerSettings(_Model):
    """How to reach a broker: the fields of a block that are about the connection."""

    host: str = Field(description="Broker host name or IP address")
    port: int = Field(default=1883, ge=1, le=65535, description="Broker port (8883 for TLS)")
    protocol: MqttProtocol = Field(default="5", description="MQTT protocol version: 3.1.1 or 5")
    username: str | None = Field(default=None, description="User name, if the broker needs one")
    password: SecretStr | None = Field(
        default=None, description="Password; use ${MQTT_UPLINK_PASSWORD}, never a literal"
    )
    tls: MqttTls | None = Field(default=None, description="TLS settings; omit for plain TCP")
    keepalive: Duration = Field(
        default=timedelta(seconds=60), description="Keep-alive interval of the connection"
    )
    reconnect_min: Duration = Field(
        default=timedelta(seconds=1), description="First wait before reconnecting"
    )
    reconnect_max: Duration = Field(
        default=timedelta(seconds=60), description="Longest wait between reconnect attempts"
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
    def _ordered(self) -> BrokerSettings:
        if self.reconnect_min > self.reconnect_max:
            raise ValueError("reconnect_min must not exceed reconnect_max")
        return self
