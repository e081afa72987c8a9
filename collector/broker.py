"""paho clients set up the one way facmon talks to a broker.

Every part that connects to a broker builds its client here: the MQTT collector and the ingest
workers (persistent sessions, manual acknowledgement), the uplink publisher, and the ``mqtt``
notification channel (a short-lived connection per delivery).
"""

from __future__ import annotations

import ssl

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from config.broker import BrokerSettings, MqttTls

__all__ = ["broker_client", "new_client", "use_tls"]


def new_client(
    client_id: str,
    *,
    protocol: str,
    clean: bool,
    manual_ack: bool = False,
    reconnect: bool = True,
    client_class: type[mqtt.Client] = mqtt.Client,
) -> mqtt.Client:
    """A paho client speaking ``protocol`` ("5" or "3.1.1") with callback API version 2.

    ``clean``: start without a session (MQTT 3.1.1 clean session; with MQTT 5 the session is
    chosen at connect time, ``clean_start``). ``reconnect``: paho reconnects with back-off by
    itself after a lost connection. ``client_class``: paho's client or a subclass of it.
    """
    v5 = protocol == "5"
    return client_class(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        clean_session=None if v5 else clean,
        protocol=MQTTProtocolVersion.MQTTv5 if v5 else MQTTProtocolVersion.MQTTv311,
        reconnect_on_failure=reconnect,
        manual_ack=manual_ack,
    )


def use_tls(client: mqtt.Client, tls: MqttTls | None) -> None:
    """Connect over TLS as ``tls`` says; ``None`` leaves the connection plain TCP."""
    if tls is None:
        return
    client.tls_set(
        ca_certs=None if tls.ca_file is None else str(tls.ca_file),
        certfile=None if tls.cert_file is None else str(tls.cert_file),
        keyfile=None if tls.key_file is None else str(tls.key_file),
        cert_reqs=ssl.CERT_REQUIRED if tls.verify else ssl.CERT_NONE,
    )
    client.tls_insecure_set(not tls.verify)


def broker_client(
    s: BrokerSettings,
    client_id: str,
    *,
    clean: bool,
    manual_ack: bool = False,
    client_class: type[mqtt.Client] = mqtt.Client,
) -> mqtt.Client:
    """A paho client for ``s``: credentials, TLS and reconnect back-off as configured.

    ``clean``: start without a session (a publisher needs none; paho keeps its unacknowledged
    messages itself). A subscriber that must get what was queued while it was away passes False.
    """
    client = new_client(
        client_id,
        protocol=s.protocol,
        clean=clean,
        manual_ack=manual_ack,
        client_class=client_class,
    )
    if s.username is not None:
        client.username_pw_set(
            s.username, None if s.password is None else s.password.get_secret_value()
        )
    use_tls(client, s.tls)
    client.reconnect_delay_set(
        max(1, int(s.reconnect_min.total_seconds())),
        max(1, int(s.reconnect_max.total_seconds())),
    )
    return client
