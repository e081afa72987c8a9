"""A facmon MQTT consumer in its own process, for the kill test.

``python -m tests.collector.mqtt_consumer CONFIG STATUS_FILE`` builds the real pipeline
(``Pipeline.build``: DurableWriter -> EmbeddedStore, alert engine) with an
:class:`~collector.mqtt.MqttCollector` feeding ``Pipeline.ingest``, and writes its stats as JSON
to STATUS_FILE every 50 ms. SIGTERM stops it cleanly; the test SIGKILLs it to simulate a crash.

``FACMON_TEST_SINK_DELAY`` (seconds) slows every sink call so a kill lands mid-stream.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from collector.mqtt import MqttCollector
from config.loader import load_config
from facmon.runtime import Pipeline
from store.reading import Reading


def main(argv: Sequence[str]) -> int:
    config = load_config(argv[0], env={})
    status = Path(argv[1])
    delay = float(os.environ.get("FACMON_TEST_SINK_DELAY", "0"))
    pipeline = Pipeline.build(config)
    pipeline.writer.start()
    max_value = [0.0]

    def sink(readings: Sequence[Reading]) -> None:
        if delay:
            time.sleep(delay)
        pipeline.ingest(readings)
        max_value[0] = max([max_value[0], *(r.value for r in readings)])

    collector = MqttCollector(config, sink)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    collector.start()
    while not stop.wait(0.05):
        data = {**collector.stats.as_dict(), "max_value": max_value[0]}
        tmp = status.with_suffix(".tmp")
        tmp.write_text(json.dumps(data), encoding="utf-8")
        tmp.replace(status)
    collector.stop()
    pipeline.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
