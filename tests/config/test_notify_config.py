"""The site config's `channels` block and people's `contacts`, as a user writes them."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from config.loader import ConfigError, load_config
from config.models import SiteConfig
from config.notify import (
    DingtalkChannel,
    EmailChannel,
    FeishuChannel,
    MqttChannel,
    WebhookChannel,
    WecomChannel,
)
from tests.config.helpers import MINIMAL

CHANNELS = """\
channels:
  - id: hook
    type: webhook
    url: https://tickets.example.com/facmon
    secret_env: FACMON_HOOK_SECRET
    headers: {X-Site: s1}
    headers_env: {Authorization: FACMON_HOOK_AUTH}
  - {id: wecom-ops, type: wecom, url_env: FACMON_WECOM_URL}
  - {id: ding, type: dingtalk, url_env: FACMON_DING_URL, secret_env: FACMON_DING_SECRET}
  - {id: lark, type: feishu, url_env: FACMON_FEISHU_URL, secret_env: FACMON_FEISHU_SECRET,
     mention: false, timeout: 5s}
  - id: mail
    type: email
    host: smtp.example.com
    username_env: FACMON_SMTP_USER
    password_env: FACMON_SMTP_PASSWORD
    sender: facmon <facmon@example.com>
  - {id: pager, type: mqtt, protocol: 5}
"""


def load(tmp_path: Path, text: str) -> SiteConfig:
    path = tmp_path / "site.yaml"
    path.write_text(text, encoding="utf-8")
    return load_config(path, env={})


def problems(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text)
    return [str(p) for p in info.value.problems]


def test_every_channel_type_with_its_defaults(tmp_path: Path) -> None:
    text = (
        MINIMAL
        + CHANNELS
        + """\
oncall:
  people:
    - {id: zhang, name: 张工, phone: 13800000000, email: zhang@example.com,
       contacts: [wecom-ops, mail, pager]}
    - {id: li, name: 李工, contacts: [ding]}
"""
    )
    config = load(tmp_path, text)
    assert isinstance(config, SiteConfig)
    hook, wecom, ding, lark, mail, pager = config.channels
    assert isinstance(hook, WebhookChannel) and hook.secret_env == "FACMON_HOOK_SECRET"
    assert hook.timeout == timedelta(seconds=10) and hook.headers == {"X-Site": "s1"}
    assert isinstance(wecom, WecomChannel) and wecom.mention and wecom.url is None
    assert isinstance(ding, DingtalkChannel) and ding.secret_env == "FACMON_DING_SECRET"
    assert isinstance(lark, FeishuChannel) and not lark.mention
    assert lark.timeout == timedelta(seconds=5)
    assert isinstance(mail, EmailChannel) and mail.security == "starttls"
    assert mail.effective_port == 587
    assert isinstance(pager, MqttChannel)
    assert (pager.host, pager.port, pager.qos, pager.protocol) == ("127.0.0.1", 1883, 1, "5")
    assert pager.topic == "facmon/{site}/pages/{recipient}"
    assert config.oncall.people[0].contacts == ["wecom-ops", "mail", "pager"]
    assert config.oncall.people[1].contacts == ["ding"]


def test_channel_mistakes_name_the_line_and_field(tmp_path: Path) -> None:
    text = (
        MINIMAL
        + """\
channels:
  - {id: a, type: wecom}
  - {id: b, type: dingtalk, url: https://oapi.dingtalk.com/robot/send, url_env: X}
  - {id: c, type: webhook, url: ftp://example.com/x, secret_env: "my secret"}
  - {id: d, type: webhook, url: https://x.example.com, headers: {Idempotency-Key: x}}
  - {id: e, type: mqtt, topic: "facmon/{site}/{person}/#"}
  - {id: f, type: email, host: smtp.example.com, sender: nobody}
  - {id: g, type: sms}
  - {id: a, type: feishu, url_env: FEISHU_URL, timeout: 10m}
"""
    )
    assert problems(tmp_path, text) == [
        "site.yaml:5 channels[0]: give exactly one of 'url_env' (recommended) or 'url'",
        "site.yaml:6 channels[1]: give exactly one of 'url_env' (recommended) or 'url'",
        "site.yaml:7 channels[2].url: must be an http:// or https:// URL with a host",
        "site.yaml:7 channels[2].secret_env: must be the name of an environment variable "
        "(letters, digits and '_', not starting with a digit), e.g. FACMON_WEBHOOK_SECRET; "
        "got 'my secret'",
        "site.yaml:8 channels[3].headers: header 'Idempotency-Key' is set by facmon and cannot "
        "be configured",
        "site.yaml:9 channels[4].topic: a topic to publish to cannot contain the wildcards + or #",
        "site.yaml:10 channels[5].sender: must be an e-mail address, e.g. "
        "'facmon <facmon@example.com>'",
        "site.yaml:11 channels[6].type: unknown value type 'sms' (expected one of: webhook, "
        "wecom, dingtalk, feishu, email, mqtt)",
        "site.yaml:12 channels[7].timeout: must be between 100ms and 2m",
        "site.yaml:12 channels[7].id: duplicate channel id 'a'",
    ]


def test_an_unknown_topic_placeholder_lists_the_known_ones(tmp_path: Path) -> None:
    text = MINIMAL + "channels:\n  - {id: e, type: mqtt, topic: 'facmon/{site}/{person}'}\n"
    assert problems(tmp_path, text) == [
        "site.yaml:5 channels[0].topic: unknown placeholder(s) {person} (use {building}, "
        "{device}, {kind}, {priority}, {recipient}, {site}, {ticket})"
    ]


def test_contacts_must_name_declared_channels_and_e_mail_needs_an_address(
    tmp_path: Path,
) -> None:
    text = (
        MINIMAL
        + CHANNELS
        + """\
oncall:
  people:
    - id: zhang
      name: 张工
      contacts:
        - wecom-ops
        - mail
        - wecom-opz
        - wecom-ops
"""
    )
    assert problems(tmp_path, text) == [
        "site.yaml:28 oncall.people[0].contacts[1]: channel 'mail' sends e-mail but this "
        "person has no 'email' address",
        "site.yaml:29 oncall.people[0].contacts[2]: unknown channel 'wecom-opz' (declared: "
        "hook, wecom-ops, ding, lark, mail, pager)",
        "site.yaml:30 oncall.people[0].contacts[3]: channel 'wecom-ops' is listed twice",
    ]
