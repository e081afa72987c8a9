"""One delivery attempt per channel, against real receivers on loopback.

The HTTP receivers are real servers (http.server on port 0) that play the far end: the group
robots' answers are the vendors' documented JSON, and each receiver checks the request the way
the vendor documents it (DingTalk recomputes ``sign`` from the ``timestamp`` query parameter,
Feishu from the ``timestamp`` in the body, the webhook receiver recomputes the HMAC), written
here from the vendors' descriptions rather than by calling facmon's signing code. E-mail goes to
a real SMTP server (aiosmtpd) and MQTT to the shared Mosquitto on 127.0.0.1:1883.
"""

from __future__ import annotations

import asyncio
import base64
import getpass
import hashlib
import hmac
import json
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

import httpx
import paho.mqtt.client as mqtt
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
from paho.mqtt.enums import CallbackAPIVersion
from pydantic import TypeAdapter

from alerts.channels import DeliveryError, deliver, mqtt_topic, verify_webhook_signature
from alerts.messages import Notice
from config.notify import Channel, MqttChannel

T = TypeVar("T")
NOW = datetime(2026, 11, 27, 11, 6, tzinfo=UTC)
SHANGHAI = ZoneInfo("Asia/Shanghai")
WECOM_KEY = "693a91f6-7xxx-4bc4-97a0-0ec2sifa5aaa"
DING_TOKEN = "b3f0c1d2e3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0"
DING_SECRET = "SECabcdef0123456789abcdef0123456789abcdef0123456789abcdef01234567"
FEISHU_HOOK = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
FEISHU_SECRET = "feishu-signing-secret-123"
HOOK_SECRET = "webhook-hmac-secret-xyz"
SECRETS = (WECOM_KEY, DING_TOKEN, DING_SECRET, FEISHU_HOOK, FEISHU_SECRET, HOOK_SECRET)
CHANNEL: TypeAdapter[Channel] = TypeAdapter(Channel)


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def channel(**fields: Any) -> Channel:
    return CHANNEL.validate_python(fields)


def notice(**changes: Any) -> Notice:
    values: dict[str, Any] = {
        "key": "grp1:ep7:firing:zhang",
        "kind": "page",
        "language": "zh-CN",
        "site": "riverside",
        "title": "电梯困人",
        "at": datetime(2026, 11, 27, 11, 5, tzinfo=UTC),
        "recipient_id": "zhang",
        "recipient_name": "张工",
        "recipient_phone": "13800000000",
        "recipient_email": "zhang@example.com",
        "ticket_id": 123,
        "ticket_number": "WO-000123",
        "priority": "P1",
        "severity": "critical",
        "status": "NEW",
        "device": "lift-1",
        "device_name": "1号客梯",
        "building": "A座",
        "fault_class": "entrapment",
        "link": "https://facmon.example.com/console/tickets/123",
        "step": "第 1 步，共 3 步",
    }
    values.update(changes)
    return Notice(**values)


def failure(coro: Coroutine[Any, Any, None]) -> DeliveryError:
    with pytest.raises(DeliveryError) as info:
        run(coro)
    text = str(info.value)
    for secret in SECRETS:
        assert secret not in text
    assert "?" not in text  # no URL with its query (robot tokens live there)
    return info.value


# --------------------------------------------------------------------------------------------
# A loopback HTTP receiver


@dataclass
class Request:
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


Reply = tuple[int, Any] | tuple[int, Any, dict[str, str]]


@dataclass
class Receiver:
    port: int
    respond: Callable[[Request], Reply] = lambda r: (200, {})
    requests: list[Request] = field(default_factory=list)
    delay: float = 0.0

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver(port=0)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            parts = urlsplit(self.path)
            req = Request(
                parts.path,
                parse_qs(parts.query),
                {k.lower(): v for k, v in self.headers.items()},
                self.rfile.read(length),
            )
            state.requests.append(req)
            if state.delay:
                time.sleep(state.delay)
            reply = state.respond(req)
            status, body = reply[0], reply[1]
            extra = reply[2] if len(reply) == 3 else {}
            data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for k, v in extra.items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --------------------------------------------------------------------------------------------
# Webhook


def check_facmon_signature(secret: str) -> Callable[[Request], Reply]:
    """A receiver that verifies X-Facmon-Signature as documented: hex HMAC-SHA256 keyed with
    the secret over '<X-Facmon-Timestamp>.<raw body>'."""

    def respond(req: Request) -> Reply:
        ts = req.headers["x-facmon-timestamp"]
        want = hmac.new(secret.encode(), ts.encode() + b"." + req.body, hashlib.sha256)
        if req.headers.get("x-facmon-signature") != "sha256=" + want.hexdigest():
            return 401, {"error": "bad signature"}
        return 202, {"ok": True}

    return respond


def test_webhook_posts_a_signed_json_document_with_the_idempotency_key(
    receiver: Receiver,
) -> None:
    receiver.respond = check_facmon_signature(HOOK_SECRET)
    ch = channel(
        id="hook",
        type="webhook",
        url=receiver.url("/hooks/facmon"),
        secret_env="HOOK_SECRET",
        headers={"X-Site": "riverside"},
        headers_env={"Authorization": "HOOK_AUTH"},
    )
    env = {"HOOK_SECRET": HOOK_SECRET, "HOOK_AUTH": "Bearer t0ken-value"}
    run(deliver(ch, notice(), env=env, now=NOW, tz=SHANGHAI))
    run(deliver(ch, notice(), env=env, now=NOW, tz=SHANGHAI))  # a retry: same key
    first, again = receiver.requests
    assert first.headers["idempotency-key"] == "grp1:ep7:firing:zhang"
    assert again.headers["idempotency-key"] == first.headers["idempotency-key"]
    assert first.headers["x-facmon-timestamp"] == str(int(NOW.timestamp()))
    assert first.headers["x-site"] == "riverside"
    assert first.headers["authorization"] == "Bearer t0ken-value"
    assert first.headers["content-type"] == "application/json; charset=utf-8"
    body = first.json()
    assert body["idempotency_key"] == "grp1:ep7:firing:zhang"
    assert body["kind"] == "page" and body["site"] == "riverside"
    assert body["ticket"]["number"] == "WO-000123" and body["ticket"]["priority"] == "P1"
    assert body["recipient"] == {
        "id": "zhang",
        "name": "张工",
        "phone": "13800000000",
        "email": "zhang@example.com",
    }
    assert body["subject"] == "【P1·告警】电梯困人（WO-000123）"
    assert "时间：2026-11-27 19:05" in body["text"]
    assert body["link"] == "https://facmon.example.com/console/tickets/123"
    assert body["at"] == "2026-11-27T11:05:00+00:00"

    ts, sig = first.headers["x-facmon-timestamp"], first.headers["x-facmon-signature"]
    assert verify_webhook_signature(HOOK_SECRET, ts, first.body, sig)
    assert verify_webhook_signature(HOOK_SECRET, ts, first.body, sig, now=NOW)
    assert not verify_webhook_signature(HOOK_SECRET, ts, first.body + b" ", sig)
    assert not verify_webhook_signature("other", ts, first.body, sig)
    assert not verify_webhook_signature(HOOK_SECRET, str(int(ts) + 1), first.body, sig)
    late = NOW + timedelta(minutes=6)
    assert not verify_webhook_signature(HOOK_SECRET, ts, first.body, sig, now=late)


def test_a_wrong_webhook_secret_is_refused_by_the_receiver_and_not_retried(
    receiver: Receiver,
) -> None:
    receiver.respond = check_facmon_signature(HOOK_SECRET)
    ch = channel(id="hook", type="webhook", url=receiver.url(), secret_env="S")
    err = failure(deliver(ch, notice(), env={"S": "not-the-secret"}, now=NOW))
    assert not err.retryable
    assert str(err) == (
        f"channel hook: http://127.0.0.1:{receiver.port} answered HTTP 401: "
        '{"error": "bad signature"}'
    )
    assert "not-the-secret" not in str(err)


@pytest.mark.parametrize(
    ("status", "retryable"),
    [(500, True), (502, True), (503, True), (429, True), (408, True), (400, False),
     (404, False), (410, False), (302, False)],
)  # fmt: skip
def test_webhook_http_status_decides_retry(
    receiver: Receiver, status: int, retryable: bool
) -> None:
    receiver.respond = lambda r: (status, {"error": "x"}, {"Location": "http://127.0.0.1/x"})
    ch = channel(id="hook", type="webhook", url=receiver.url())
    err = failure(deliver(ch, notice(), env={}, now=NOW))
    assert err.retryable is retryable
    assert err.channel == "hook" and str(status) in str(err)


def test_retry_after_is_passed_on(receiver: Receiver) -> None:
    receiver.respond = lambda r: (429, "slow down", {"Retry-After": "30"})
    ch = channel(id="hook", type="webhook", url=receiver.url())
    err = failure(deliver(ch, notice(), env={}, now=NOW))
    assert err.retryable and err.retry_after == timedelta(seconds=30)


def test_network_failures_are_retryable(receiver: Receiver) -> None:
    refused = channel(id="hook", type="webhook", url=f"http://127.0.0.1:{closed_port()}/x")
    err = failure(deliver(refused, notice(), env={}, now=NOW))
    assert err.retryable and "cannot reach http://127.0.0.1" in str(err)

    receiver.delay = 1.0
    slow = channel(id="hook", type="webhook", url=receiver.url(), timeout="200ms")
    started = time.monotonic()
    err = failure(deliver(slow, notice(), env={}, now=NOW))
    assert time.monotonic() - started < 0.9
    assert err.retryable and str(err) == (
        f"channel hook: no answer from http://127.0.0.1:{receiver.port} within 0.2s"
    )


def test_a_missing_secret_is_a_config_error_naming_the_variable(receiver: Receiver) -> None:
    ch = channel(id="hook", type="webhook", url=receiver.url(), secret_env="HOOK_SECRET")
    err = failure(deliver(ch, notice(), env={}, now=NOW))
    assert not err.retryable
    assert str(err) == (
        "channel hook: environment variable HOOK_SECRET (webhook signing secret) is not set"
    )
    assert receiver.requests == []


def test_a_shared_http_client_is_used(receiver: Receiver) -> None:
    ch = channel(id="hook", type="webhook", url=receiver.url())

    async def twice() -> None:
        async with httpx.AsyncClient() as client:
            await deliver(ch, notice(), env={}, client=client, now=NOW)
            await deliver(ch, notice(kind="resolved"), env={}, client=client, now=NOW)

    run(twice())
    assert [r.json()["kind"] for r in receiver.requests] == ["page", "resolved"]


# --------------------------------------------------------------------------------------------
# WeCom group robot


def wecom_vendor(reply: dict[str, Any] | None = None) -> Callable[[Request], Reply]:
    """WeCom's /cgi-bin/webhook/send: the key in the query names the robot."""

    def respond(req: Request) -> Reply:
        if req.path != "/cgi-bin/webhook/send" or req.query.get("key") != [WECOM_KEY]:
            return 200, {"errcode": 93000, "errmsg": "invalid webhook url, hint: [x]"}
        return 200, reply or {"errcode": 0, "errmsg": "ok"}

    return respond


def wecom(receiver: Receiver, **extra: Any) -> tuple[Channel, dict[str, str]]:
    url = receiver.url(f"/cgi-bin/webhook/send?key={WECOM_KEY}")
    return channel(id="wecom-ops", type="wecom", url_env="WECOM_URL", **extra), {"WECOM_URL": url}


def test_wecom_mentions_by_phone_in_a_text_message(receiver: Receiver) -> None:
    receiver.respond = wecom_vendor()
    ch, env = wecom(receiver)
    run(deliver(ch, notice(), env=env, now=NOW, tz=SHANGHAI))
    body = receiver.requests[0].json()
    assert body["msgtype"] == "text"
    assert body["text"]["mentioned_mobile_list"] == ["13800000000"]
    assert body["text"]["content"].startswith("【P1·告警】电梯困人\n")


def test_wecom_without_a_phone_sends_markdown(receiver: Receiver) -> None:
    receiver.respond = wecom_vendor()
    ch, env = wecom(receiver)
    run(deliver(ch, notice(recipient_phone=None), env=env, now=NOW, tz=SHANGHAI))
    body = receiver.requests[0].json()
    assert body["msgtype"] == "markdown"
    assert body["markdown"]["content"].startswith("**【P1·告警】电梯困人**\n")
    assert "[请确认](https://facmon.example.com/console/tickets/123)" in body["markdown"]["content"]


def test_wecom_rate_limit_is_retryable_and_a_bad_key_is_not(receiver: Receiver) -> None:
    receiver.respond = wecom_vendor({"errcode": 45009, "errmsg": "api freq out of limit"})
    ch, env = wecom(receiver)
    err = failure(deliver(ch, notice(), env=env, now=NOW))
    assert err.retryable
    assert str(err) == (
        f"channel wecom-ops: http://127.0.0.1:{receiver.port} is rate limiting "
        "(code 45009: api freq out of limit)"
    )

    receiver.respond = wecom_vendor()
    env = {"WECOM_URL": receiver.url("/cgi-bin/webhook/send?key=0000-wrong-key-00000000")}
    err = failure(deliver(ch, notice(), env=env, now=NOW))
    assert not err.retryable and "code 93000" in str(err)
    assert "0000-wrong-key-00000000" not in str(err)


def test_robot_http_errors_without_a_code(receiver: Receiver) -> None:
    ch, env = wecom(receiver)
    receiver.respond = lambda r: (502, "<html>bad gateway</html>")
    assert failure(deliver(ch, notice(), env=env, now=NOW)).retryable
    receiver.respond = lambda r: (200, "<html>captive portal</html>")
    err = failure(deliver(ch, notice(), env=env, now=NOW))
    assert not err.retryable and "not a robot's" in str(err)


def test_a_robot_url_missing_from_the_environment(receiver: Receiver) -> None:
    ch, _ = wecom(receiver)
    err = failure(deliver(ch, notice(), env={"WECOM_URL": ""}, now=NOW))
    assert not err.retryable
    assert str(err) == (
        "channel wecom-ops: environment variable WECOM_URL (robot webhook URL) is not set"
    )
    err = failure(deliver(ch, notice(), env={"WECOM_URL": "qyapi.weixin.qq.com/x"}, now=NOW))
    assert not err.retryable
    assert str(err) == "channel wecom-ops: environment variable WECOM_URL is not an http(s) URL"


# --------------------------------------------------------------------------------------------
# DingTalk custom robot


def dingtalk_vendor(reply: dict[str, Any] | None = None) -> Callable[[Request], Reply]:
    """DingTalk's /robot/send with 加签: sign must be base64(HmacSHA256(key=secret,
    msg='<timestamp>\\n<secret>')), URL-encoded in the query, and the timestamp (ms) within an
    hour of the server's clock (NOW here)."""

    def respond(req: Request) -> Reply:
        if req.query.get("access_token") != [DING_TOKEN]:
            return 200, {"errcode": 300001, "errmsg": "token is not exist"}
        ts = req.query["timestamp"][0]
        if abs(int(ts) / 1000 - NOW.timestamp()) > 3600:
            return 200, {"errcode": 310000, "errmsg": "invalid timestamp"}
        mac = hmac.new(DING_SECRET.encode(), f"{ts}\n{DING_SECRET}".encode(), hashlib.sha256)
        if req.query["sign"] != [base64.b64encode(mac.digest()).decode()]:
            return 200, {"errcode": 310000, "errmsg": "sign not match"}
        return 200, reply or {"errcode": 0, "errmsg": "ok"}

    return respond


def dingtalk(receiver: Receiver, secret: str = DING_SECRET) -> tuple[Channel, dict[str, str]]:
    url = receiver.url(f"/robot/send?access_token={DING_TOKEN}")
    ch = channel(id="ding", type="dingtalk", url_env="DING_URL", secret_env="DING_SECRET")
    return ch, {"DING_URL": url, "DING_SECRET": secret}


def test_dingtalk_signs_and_mentions_by_phone(receiver: Receiver) -> None:
    receiver.respond = dingtalk_vendor()
    ch, env = dingtalk(receiver)
    run(deliver(ch, notice(), env=env, now=NOW, tz=SHANGHAI))
    req = receiver.requests[0]
    assert req.query["timestamp"] == [str(int(NOW.timestamp() * 1000))]
    body = req.json()
    assert body["msgtype"] == "markdown"
    assert body["markdown"]["title"] == "【P1·告警】电梯困人（WO-000123）"
    assert body["markdown"]["text"].startswith("**【P1·告警】电梯困人**\n\n设备：")
    assert body["markdown"]["text"].endswith("\n\n@13800000000")
    assert body["at"] == {"atMobiles": ["13800000000"], "isAtAll": False}


def test_dingtalk_wrong_secret_and_rate_limit(receiver: Receiver) -> None:
    receiver.respond = dingtalk_vendor()
    ch, env = dingtalk(receiver, secret="SECnot-the-right-secret-0000")
    err = failure(deliver(ch, notice(), env=env, now=NOW))
    assert not err.retryable and "code 310000: sign not match" in str(err)
    assert "SECnot-the-right-secret-0000" not in str(err)

    receiver.respond = dingtalk_vendor(
        {"errcode": 130101, "errmsg": "send too fast, exceed 20 times per minute"}
    )
    ch, env = dingtalk(receiver)
    err = failure(deliver(ch, notice(), env=env, now=NOW))
    assert err.retryable and "code 130101" in str(err)


# --------------------------------------------------------------------------------------------
# Feishu custom robot


def feishu_vendor(reply: dict[str, Any] | None = None) -> Callable[[Request], Reply]:
    """Feishu's /open-apis/bot/v2/hook/<id> with 签名校验: sign in the body must be
    base64(HmacSHA256(key='<timestamp>\\n<secret>', msg='')), timestamp in seconds."""

    def respond(req: Request) -> Reply:
        if req.path != f"/open-apis/bot/v2/hook/{FEISHU_HOOK}":
            return 404, {"code": 19001, "msg": "param invalid: incoming webhook access token"}
        body = req.json()
        ts = body["timestamp"]
        mac = hmac.new(f"{ts}\n{FEISHU_SECRET}".encode(), b"", hashlib.sha256)
        if (
            body.get("sign") != base64.b64encode(mac.digest()).decode()
            or abs(int(ts) - NOW.timestamp()) > 3600
        ):
            return 200, {
                "code": 19021,
                "data": {},
                "msg": "sign match fail or timestamp is not within one hour from current time",
            }
        return 200, reply or {"code": 0, "data": {}, "msg": "success"}

    return respond


def feishu(receiver: Receiver, secret: str = FEISHU_SECRET) -> tuple[Channel, dict[str, str]]:
    url = receiver.url(f"/open-apis/bot/v2/hook/{FEISHU_HOOK}")
    ch = channel(id="lark", type="feishu", url_env="LARK_URL", secret_env="LARK_SECRET")
    return ch, {"LARK_URL": url, "LARK_SECRET": secret}


def test_feishu_signs_in_the_body_and_sends_a_card(receiver: Receiver) -> None:
    receiver.respond = feishu_vendor()
    ch, env = feishu(receiver)
    run(deliver(ch, notice(language="en", title="Lift 1 entrapment"), env=env, now=NOW))
    body = receiver.requests[0].json()
    assert body["timestamp"] == str(int(NOW.timestamp()))
    assert body["msg_type"] == "interactive"
    card = body["card"]
    assert card["header"]["title"]["content"] == "[P1 · Alert] Lift 1 entrapment (WO-000123)"
    assert card["header"]["template"] == "red"
    text = card["elements"][0]["text"]["content"]
    assert text.startswith("<at email=zhang@example.com></at>\nDevice: 1号客梯")
    button = card["elements"][1]["actions"][0]
    assert button["text"]["content"] == "Acknowledge"
    assert button["url"] == "https://facmon.example.com/console/tickets/123"


@pytest.mark.parametrize(("code", "retryable"), [(9499, True), (11232, True), (19024, False)])
def test_feishu_codes(receiver: Receiver, code: int, retryable: bool) -> None:
    receiver.respond = feishu_vendor({"code": code, "data": {}, "msg": "refused"})
    ch, env = feishu(receiver)
    err = failure(deliver(ch, notice(), env=env, now=NOW))
    assert err.retryable is retryable and f"code {code}" in str(err)


def test_feishu_wrong_secret_and_wrong_hook(receiver: Receiver) -> None:
    receiver.respond = feishu_vendor()
    ch, env = feishu(receiver, secret="not-the-secret-at-all")
    err = failure(deliver(ch, notice(), env=env, now=NOW))
    assert not err.retryable and "code 19021" in str(err)

    env["LARK_URL"] = receiver.url("/open-apis/bot/v2/hook/ffffffff-0000-1111-2222-333333333333")
    err = failure(deliver(ch, notice(), env=env, now=NOW))
    assert not err.retryable and "HTTP 404" in str(err)
    assert "ffffffff-0000-1111-2222-333333333333" not in str(err)


# --------------------------------------------------------------------------------------------
# E-mail


class Inbox:
    """aiosmtpd handler keeping what it accepts; ``rcpt_reply``/``data_reply`` script refusals."""

    def __init__(self) -> None:
        self.messages: list[tuple[list[str], EmailMessage]] = []
        self.rcpt_reply = "250 OK"
        self.data_reply = "250 OK"

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        if self.rcpt_reply.startswith("250"):
            envelope.rcpt_tos.append(address)
        return self.rcpt_reply

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.data_reply.startswith("250"):
            msg = message_from_bytes(envelope.content, policy=policy.default)
            assert isinstance(msg, EmailMessage)
            self.messages.append((list(envelope.rcpt_tos), msg))
        return self.data_reply


def _authenticate(
    server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
) -> AuthResult:
    ok = auth_data.login == b"facmon" and auth_data.password == b"mail-pass-123"
    return AuthResult(success=ok, handled=False)  # not handled: aiosmtpd answers 535


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    port = closed_port()
    inbox = Inbox()
    controller = Controller(
        inbox,
        hostname="127.0.0.1",
        port=port,
        authenticator=_authenticate,
        auth_require_tls=False,  # loopback only; TLS is not what these tests are about
    )
    controller.start()
    yield inbox, port
    controller.stop()


def mail_channel(port: int, **extra: Any) -> Channel:
    return channel(
        id="mail",
        type="email",
        host="127.0.0.1",
        port=port,
        security="none",
        username_env="SMTP_USER",
        password_env="SMTP_PASSWORD",
        sender="facmon <facmon@riverside.example.com>",
        timeout="5s",
        **extra,
    )


MAIL_ENV = {"SMTP_USER": "facmon", "SMTP_PASSWORD": "mail-pass-123"}


def test_email_goes_to_the_person_with_a_message_id_from_the_key(
    smtp: tuple[Inbox, int],
) -> None:
    inbox, port = smtp
    ch = mail_channel(port)
    run(deliver(ch, notice(), env=MAIL_ENV, now=NOW, tz=SHANGHAI))
    run(deliver(ch, notice(), env=MAIL_ENV, now=NOW + timedelta(minutes=1), tz=SHANGHAI))
    run(deliver(ch, notice(key="grp1:ep7:resolved:zhang", kind="resolved"), env=MAIL_ENV))
    (to, first), (_, retry), (_, other) = inbox.messages
    assert to == ["zhang@example.com"]
    assert first["Subject"] == "【P1·告警】电梯困人（WO-000123）"
    assert first["From"] == "facmon <facmon@riverside.example.com>"
    assert "zhang@example.com" in first["To"]
    assert first["Auto-Submitted"] == "auto-generated"
    assert first["X-Facmon-Idempotency-Key"] == "grp1:ep7:firing:zhang"
    assert first["Message-ID"].endswith("@riverside.example.com>")
    assert retry["Message-ID"] == first["Message-ID"] != other["Message-ID"]
    part = first.get_body(("plain",))
    assert part is not None
    body = part.get_content()
    assert "时间：2026-11-27 19:05" in body
    assert "请确认：https://facmon.example.com/console/tickets/123" in body


def test_email_failures(smtp: tuple[Inbox, int]) -> None:
    inbox, port = smtp
    ch = mail_channel(port)
    bad_login = {"SMTP_USER": "facmon", "SMTP_PASSWORD": "wrong-password"}
    err = failure(deliver(ch, notice(), env=bad_login, now=NOW))
    assert not err.retryable and "refused the login (SMTP 535)" in str(err)
    assert "wrong-password" not in str(err)

    inbox.rcpt_reply = "550 5.1.1 no such user"
    err = failure(deliver(ch, notice(), env=MAIL_ENV, now=NOW))
    assert not err.retryable and "550" in str(err)

    inbox.rcpt_reply = "250 OK"
    inbox.data_reply = "451 4.3.0 try again later"
    err = failure(deliver(ch, notice(), env=MAIL_ENV, now=NOW))
    assert err.retryable and "451" in str(err)

    err = failure(deliver(ch, notice(recipient_email=None), env=MAIL_ENV, now=NOW))
    assert not err.retryable and str(err) == "channel mail: zhang has no e-mail address"

    err = failure(deliver(mail_channel(closed_port()), notice(), env=MAIL_ENV, now=NOW))
    assert err.retryable and "cannot reach 127.0.0.1" in str(err)
    assert inbox.messages == []


# --------------------------------------------------------------------------------------------
# MQTT (the shared Mosquitto on 127.0.0.1:1883)


def test_mqtt_publishes_with_qos1_and_waits_for_the_ack() -> None:
    prefix = f"facmon-test/{uuid.uuid4().hex}"
    ch = MqttChannel(id="pager", type="mqtt", topic=prefix + "/{site}/pages/{recipient}")
    topic = mqtt_topic(ch, notice())
    assert topic == f"{prefix}/riverside/pages/zhang"

    got: list[mqtt.MQTTMessage] = []
    subscribed = threading.Event()
    arrived = threading.Event()
    sub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"facmon-test-{uuid.uuid4().hex}")
    sub.on_connect = lambda c, u, f, rc, p: c.subscribe(prefix + "/#", qos=1)
    sub.on_subscribe = lambda c, u, mid, rcs, p: subscribed.set()

    def on_message(client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        got.append(message)
        arrived.set()

    sub.on_message = on_message
    sub.connect("127.0.0.1", 1883)
    sub.loop_start()
    try:
        assert subscribed.wait(5)
        run(deliver(ch, notice(), env={}, now=NOW, tz=SHANGHAI))
        assert arrived.wait(5)
    finally:
        sub.disconnect()
        sub.loop_stop()
    (msg,) = got
    assert msg.topic == topic and msg.qos == 1 and not msg.retain
    body = json.loads(msg.payload)
    assert body["idempotency_key"] == "grp1:ep7:firing:zhang"
    assert body["recipient"]["id"] == "zhang" and body["ticket"]["number"] == "WO-000123"
    assert body["subject"] == "【P1·告警】电梯困人（WO-000123）"


def test_mqtt_topic_values_cannot_add_levels() -> None:
    ch = MqttChannel(id="pager", type="mqtt", topic="p/{building}/{device}/{ticket}")
    assert mqtt_topic(ch, notice(building="A/B", device="x+#", ticket_number=None)) == (
        "p/A_B/x__/-"
    )


def test_mqtt_broker_down_is_retryable() -> None:
    ch = channel(id="pager", type="mqtt", port=closed_port(), timeout="2s")
    err = failure(deliver(ch, notice(), env={}, now=NOW))
    assert err.retryable and "cannot reach the broker 127.0.0.1" in str(err)


def test_mqtt_missing_password_variable() -> None:
    ch = channel(id="pager", type="mqtt", username_env="MQ_USER", password_env="MQ_PASS")
    err = failure(deliver(ch, notice(), env={"MQ_USER": "facmon"}, now=NOW))
    assert not err.retryable
    assert str(err) == "channel pager: environment variable MQ_PASS (MQTT password) is not set"


@pytest.fixture
def secured_broker(tmp_path: Path) -> Iterator[int]:
    """A private mosquitto on a free loopback port with logins and an ACL: user facmon may
    publish under facmon/ only."""
    port = closed_port()
    subprocess.run(
        ["mosquitto_passwd", "-b", "-c", str(tmp_path / "passwd"), "facmon", "mq-pass-123"],
        check=True,
        capture_output=True,
    )
    (tmp_path / "acl").write_text("user facmon\ntopic write facmon/#\n", encoding="utf-8")
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\n"
        "allow_anonymous false\n"
        f"password_file {tmp_path / 'passwd'}\n"
        f"acl_file {tmp_path / 'acl'}\n"
        # Run as root, mosquitto would switch to user mosquitto, which cannot read tmp_path.
        f"user {getpass.getuser()}\n"
        f"log_dest file {tmp_path / 'mosquitto.log'}\n",
        encoding="utf-8",
    )
    proc = subprocess.Popen(
        ["/usr/sbin/mosquitto", "-c", str(conf)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 5
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, "no mosquitto"
                time.sleep(0.02)
        yield port
    finally:
        proc.terminate()
        proc.wait(5)


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_mqtt_logins_and_acl(secured_broker: int, protocol: str) -> None:
    def pager(topic: str = "facmon/{site}/pages/{recipient}") -> Channel:
        return channel(
            id="pager",
            type="mqtt",
            port=secured_broker,
            protocol=protocol,
            topic=topic,
            username_env="MQ_USER",
            password_env="MQ_PASS",
            timeout="3s",
        )

    env = {"MQ_USER": "facmon", "MQ_PASS": "mq-pass-123"}
    run(deliver(pager(), notice(), env=env, now=NOW))

    wrong = {"MQ_USER": "facmon", "MQ_PASS": "not-the-password"}
    err = failure(deliver(pager(), notice(), env=wrong, now=NOW))
    assert not err.retryable and "refused the connection" in str(err)
    assert "not-the-password" not in str(err)

    if protocol == "5":  # MQTT 3.1.1 has no way to refuse a publish: the broker drops it
        err = failure(deliver(pager("other/{recipient}"), notice(), env=env, now=NOW))
        assert not err.retryable and "Not authorized" in str(err)
