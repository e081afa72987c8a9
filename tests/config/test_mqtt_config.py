"""The site config's `mqtt` block and MQTT-fed devices, as a user writes them."""

from __future__ import annotations

from datetime import timedelta

import pytest

from config.loader import ConfigError, load_config_text
from config.models import MqttField, MqttSource
from tests.config.helpers import MINIMAL, problems_of


def test_a_valid_mqtt_block_with_defaults_and_secrets_from_the_environment() -> None:
    text = (
        MINIMAL
        + """\
devices:
  - id: shaft-t1
    name: 电梯井 温度
    kind: sensor
    location: {building: b1, floor: B1}
    source: {type: mqtt, topic: site/b1/shaft-t1/#}
mqtt:
  host: broker.example.com
  port: 8883
  protocol: 3.1.1
  username: facmon
  password: ${MQTT_PASSWORD}
  tls: {ca_file: /etc/ssl/ca.pem}
  subscriptions:
    - topic: site/+/+/env
      template: site/{building}/{device}/env
      fields:
        temperature: {path: sensors.temp, unit: "°C"}
        humidity: sensors.hum
      timestamp_field: ts
      timestamp_unit: ms
    - topic: leak/#
      format: number
      device: shaft-t1
      metric: leak
"""
    )
    config = load_config_text(text, env={"MQTT_PASSWORD": "s3cret"})
    mqtt = config.mqtt
    assert mqtt is not None
    assert mqtt.protocol == "3.1.1" and mqtt.client_id is None
    assert mqtt.password is not None and mqtt.password.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(mqtt)
    assert mqtt.session_expiry == timedelta(days=1)
    assert mqtt.keepalive == timedelta(seconds=60)
    first = mqtt.subscriptions[0]
    assert first.qos == 1 and first.format == "json"
    assert first.fields["temperature"] == MqttField(path="sensors.temp", unit="°C")
    assert first.max_future == timedelta(minutes=10) and first.max_age == timedelta(days=7)
    src = config.device("shaft-t1").source
    assert isinstance(src, MqttSource) and src.topic == "site/b1/shaft-t1/#"
    v5 = load_config_text(
        MINIMAL + "mqtt: {host: h, protocol: 5, subscriptions: "
        "[{topic: a/+, template: 'a/{device}', format: number, metric: m}]}\n",
        env={},
    )
    assert v5.mqtt is not None and v5.mqtt.protocol == "5"  # YAML reads 5 as a number


def test_bad_mqtt_blocks_are_reported_with_their_lines() -> None:
    text = (
        MINIMAL
        + """\
devices:
  - id: leak1
    name: Leak
    kind: sensor
    location: {building: b1}
    source: {type: mqtt, topic: "site/#/leak"}
mqtt:
  host: 127.0.0.1
  protocol: 4
  qos: 1
  keepalive: 1s
  password: ${MQTT_PASSWORD}
  subscriptions:
    - topic: site/+/+/env
      qos: 3
      template: site/{device}/env
      fields: {temperature: t}
    - topic: site/lev+el
      format: number
    - topic: site/x
      format: csv
"""
    )
    assert problems_of(text) == [
        "site.yaml:9 devices[0].source.topic: topic filter '#' must be a whole level and the last "
        "one, e.g. site/#",
        "site.yaml:12 mqtt.protocol: must be one of: 3.1.1, 5 (got '4')",
        "site.yaml:13 mqtt.qos: unknown field 'qos' (expected one of: host, port, protocol, "
        "username, password, tls, keepalive, reconnect_min, reconnect_max, client_id, "
        "session_expiry, max_pending, subscriptions)",
        "site.yaml:14 mqtt.keepalive: must be between 5s and 65535s",
        "site.yaml:15 mqtt.password: environment variable MQTT_PASSWORD is not set",
        "site.yaml:18 mqtt.subscriptions[0].qos: must be one of: 0, 1, 2 (got 3)",
        "site.yaml:21 mqtt.subscriptions[1].topic: topic filter '+' must be a whole level, "
        "e.g. site/+/temp",
        "site.yaml:24 mqtt.subscriptions[2].format: must be one of: json, number, influx_line "
        "(got 'csv')",
    ]


def test_formats_need_a_device_and_metric_source() -> None:
    text = (
        MINIMAL
        + """\
mqtt:
  host: 127.0.0.1
  subscriptions:
    - topic: a/+
      format: number
    - topic: b/+
      fields: {t: x}
    - topic: c/+
      format: influx_line
      fields: {t: x}
    - topic: site/+/+/env
      template: site/{device}/env
      fields: {temperature: t}
"""
    )
    assert problems_of(text) == [
        "site.yaml:7 mqtt.subscriptions[0]: format number needs {metric} in the template or "
        "'metric'",
        "site.yaml:9 mqtt.subscriptions[1]: format json needs the device: {device} in the "
        "template, 'device' or 'device_field'",
        "site.yaml:11 mqtt.subscriptions[2]: fields only apply to format json",
        "site.yaml:14 mqtt.subscriptions[3]: template has 3 levels but topic 'site/+/+/env' has 4",
    ]


def test_mqtt_devices_without_an_mqtt_block_fail_the_config_check() -> None:
    from facmon.checks import CHECKS

    text = (
        MINIMAL
        + """\
devices:
  - {id: leak1, name: Leak, kind: sensor, location: {building: b1}, source: {type: mqtt}}
"""
    )
    with pytest.raises(ConfigError) as info:
        load_config_text(text, filename="site.yaml", env={}, checks=CHECKS)
    assert [str(p) for p in info.value.problems] == [
        "site.yaml:5 devices[0].source.type: device is fed over MQTT but the config has no "
        "'mqtt' block (broker and subscriptions)"
    ]


def test_the_samples_commented_mqtt_example_loads_once_uncommented() -> None:
    from config.loader import sample_config

    lines = sample_config().splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith("# MQTT sensors (optional)"))
    end = next(i for i, ln in enumerate(lines) if ln.startswith("# Messages are acknowledged"))
    device = [ln[2:] for ln in lines[start:end] if ln.startswith(("#   - id: ", "#     "))]
    first = lines.index("# mqtt:")
    last = next((i for i in range(first, len(lines)) if not lines[i].strip()), len(lines))
    block = [ln[2:] for ln in lines[first:last]]
    text = "\n".join(lines) + "\n" + "\n".join(block) + "\n"
    text = text.replace("devices:\n", "devices:\n" + "\n".join(device) + "\n", 1)
    cfg = load_config_text(text, filename="site.yaml", env={"MQTT_PASSWORD": "s3cret"})
    assert cfg.mqtt is not None
    assert cfg.mqtt.password is not None and cfg.mqtt.password.get_secret_value() == "s3cret"
    assert cfg.device("shaft-b1-temp").source.type == "mqtt"
    sub = cfg.mqtt.subscriptions[0]
    assert sub.template == "sensors/{building}/{device}/{metric}"


def test_the_samples_commented_paging_examples_load_once_uncommented() -> None:
    """The channels, escalation and maintenance examples of the sample are valid config once
    uncommented (and the people given contacts, which E7 requires)."""
    from config.loader import sample_config

    lines = sample_config().splitlines()
    block: list[str] = []
    for key in ("# channels:", "# escalation:", "# maintenance:"):
        first = lines.index(key)
        last = next((i for i in range(first, len(lines)) if not lines[i].strip()), len(lines))
        block += [ln[2:] for ln in lines[first:last]]
    text = "\n".join(lines) + "\n" + "\n".join(block) + "\n"
    # Every person reachable through the group robot (E7 refuses a chain paging nobody).
    contacts = "      language: zh-CN\n      contacts: [wecom-engineering]\n"
    text = text.replace("      language: zh-CN\n", contacts)
    env = {
        "FACMON_WECOM_URL": "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=k",
        "FACMON_DINGTALK_URL": "https://oapi.dingtalk.com/robot/send?access_token=t",
        "FACMON_DINGTALK_SECRET": "s",
        "FACMON_SMTP_USER": "u",
        "FACMON_SMTP_PASSWORD": "p",
    }
    cfg = load_config_text(text, filename="site.yaml", env=env)
    assert [c.id for c in cfg.escalation.chains] == ["urgent", "standard"]
    assert {c.id for c in cfg.channels} == {"wecom-engineering", "dingtalk-engineering", "mail"}
    assert cfg.maintenance.schedules[0].id == "lift-15d"
