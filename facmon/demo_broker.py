"""The demo's MQTT broker: a Mosquitto of its own on a free loopback port.

Why Mosquitto and not an embedded Python broker: it is already a system dependency of facmon
(the MQTT tests and ``make system-deps`` install it; ``deploy/`` runs it), it speaks MQTT 5 as
the site brokers facmon meets do, and a broker in a process of its own keeps the demo's
interpreter free for collection and the API. amqtt, the embedded alternative, would add a dozen
packages to every install for the demo's sake and speaks MQTT 3.1.1 only. Without Mosquitto
the demo runs without its live MQTT sensors and says how to get them (install mosquitto, or
point ``--mqtt-broker`` at a broker).
"""

from __future__ import annotations

import getpass
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

__all__ = ["DemoBroker", "find_mosquitto"]

_DEBIAN_PATH = "/usr/sbin/mosquitto"  # not on a normal user's PATH


def find_mosquitto() -> str | None:
    """The mosquitto executable, or None when it is not installed."""
    found = shutil.which("mosquitto")
    if found is None and Path(_DEBIAN_PATH).is_file():
        found = _DEBIAN_PATH
    return found


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class DemoBroker:
    """``mosquitto`` on 127.0.0.1 and a free port, its config and log in ``workdir``.

    No persistence: the demo's collector keeps its session only while the demo runs; the
    sensors' history is back-filled on the next start anyway.
    """

    def __init__(self, binary: str, workdir: Path) -> None:
        self.binary = binary
        self.workdir = workdir
        self.port = 0
        self.log = workdir / "mosquitto.log"
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 10.0) -> int:
        """Start the broker; its port once it accepts connections."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = _free_port()
        conf = self.workdir / "mosquitto.conf"
        conf.write_text(
            f"listener {self.port} 127.0.0.1\n"
            "allow_anonymous true\n"
            # Started as root, mosquitto would switch to user mosquitto, which may not write
            # the log in the demo's data directory.
            f"user {getpass.getuser()}\n"
            "persistence false\n"
            f"log_dest file {self.log}\n",
            encoding="utf-8",
        )
        self._proc = subprocess.Popen(
            [self.binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + timeout
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self.port
            except OSError:
                if self._proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(
                        f"mosquitto did not start on 127.0.0.1:{self.port} (see {self.log})"
                    ) from None
                time.sleep(0.05)

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
