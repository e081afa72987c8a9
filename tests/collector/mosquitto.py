"""Real MQTT brokers for the MQTT collector tests, and a publisher that insists.

* :data:`SHARED` is the Mosquitto already running on 127.0.0.1:1883 (plain cases; every test
  uses its own topic prefix and client ids).
* :class:`PrivateBroker` is a ``/usr/sbin/mosquitto`` of its own on a free loopback port with
  persistence in a temporary directory, so it can be stopped and started again with its
  sessions and queued messages intact (fault cases).
"""

from __future__ import annotations

import contextlib
import getpass
import json
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

MOSQUITTO = "/usr/sbin/mosquitto"
SHARED = ("127.0.0.1", 1883)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def unique(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def wait_for(cond: Callable[[], bool], timeout: float, what: str = "condition") -> None:
    """Poll ``cond`` until true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


class PrivateBroker:
    """One mosquitto process; ``stop``/``start`` keep the port and the persistent sessions."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.port = free_port()
        self.conf = directory / "mosquitto.conf"
        (directory / "data").mkdir(parents=True, exist_ok=True)
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\n"
            "allow_anonymous true\n"
            # Run as root, mosquitto would switch to user mosquitto, which cannot write the
            # test's temporary directory (persistence, log).
            f"user {getpass.getuser()}\n"
            "persistence true\n"
            f"persistence_location {directory / 'data'}/\n"
            "autosave_interval 1\n"
            f"log_dest file {directory / 'mosquitto.log'}\n"
            "max_queued_messages 100000\n",
            encoding="utf-8",
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        assert self.proc is None
        self.proc = subprocess.Popen(
            [MOSQUITTO, "-c", str(self.conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 5
        while not _listening(self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                log = (self.dir / "mosquitto.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"mosquitto did not start on port {self.port}:\n{log}")
            time.sleep(0.02)

    def stop(self) -> None:
        """SIGTERM: mosquitto writes its persistence file and exits."""
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self.proc = None


class Publisher:
    """A plain paho publisher that retries a QoS 1 message until the broker acknowledged it,
    across broker restarts (re-sends are harmless: the payload carries its timestamp)."""

    def __init__(self, host: str, port: int) -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=unique("pub"))
        self.client.reconnect_delay_set(1, 1)
        self.client.connect_async(host, port)
        self.client.loop_start()
        wait_for(self.client.is_connected, 5, "publisher connection")

    def publish(self, topic: str, payload: Any, qos: int = 1, timeout: float = 20.0) -> None:
        data = payload if isinstance(payload, str | bytes) else json.dumps(payload)
        deadline = time.monotonic() + timeout
        while True:
            if self.client.is_connected():
                info = self.client.publish(topic, data, qos=qos)
                if info.rc == MQTTErrorCode.MQTT_ERR_SUCCESS:
                    with contextlib.suppress(RuntimeError, ValueError):
                        info.wait_for_publish(1.0)
                    if info.is_published():
                        return
            if time.monotonic() > deadline:
                raise AssertionError(f"could not publish to {topic} within {timeout} s")
            time.sleep(0.05)

    def publish_burst(self, messages: list[tuple[str, Any]], qos: int = 1) -> None:
        """Send all at once, then wait for the broker's acknowledgements."""
        infos = [
            self.client.publish(t, m if isinstance(m, str | bytes) else json.dumps(m), qos=qos)
            for t, m in messages
        ]
        for (topic, payload), info in zip(messages, infos, strict=True):
            with contextlib.suppress(RuntimeError, ValueError):
                info.wait_for_publish(5.0)
            if not info.is_published():
                self.publish(topic, payload, qos)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
