"""Deliver one :class:`~alerts.messages.Notice` through one configured channel, once.

:func:`deliver` makes exactly one attempt: it returns when the far end accepted the message and
raises :class:`DeliveryError` otherwise. Queueing, retries and escalation belong to the caller
(the notification outbox), which reads ``DeliveryError.retryable``: network errors, timeouts,
HTTP 408/425/429/5xx, SMTP 4xx and the robots' rate-limit codes are worth another try; HTTP 4xx,
refused logins, bad addresses and missing secrets are not (trying again changes nothing until a
person fixes the config).

Per channel:

* webhook: POST of a JSON document (:func:`webhook_payload`) with ``Idempotency-Key`` and, when
  a secret is configured, ``X-Facmon-Signature: sha256=<hex HMAC-SHA256(secret,
  "<X-Facmon-Timestamp>.<body>")>``; receivers check it with :func:`verify_webhook_signature`;
* wecom / dingtalk / feishu: the group robots' JSON formats, markdown where the robot can render
  it, the recipient @mentioned (WeCom and DingTalk by phone, Feishu by e-mail), DingTalk and
  Feishu signed when a secret is configured. They answer HTTP 200 with an error code in the
  body, so the code decides: 0 is delivered, rate limits are retryable;
* email: smtplib in a worker thread; the Message-ID is derived from the idempotency key, so a
  repeated delivery carries the same id;
* mqtt: a short-lived paho connection, one publish, and (QoS 1/2) a wait for the broker's
  acknowledgement.

Robot URLs carry their access token (WeCom ``?key=``, DingTalk ``?access_token=``, Feishu in the
path), so errors name only the scheme and host of a URL and every secret value is scrubbed from
the text a far end sends back.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import os
import smtplib
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta, tzinfo
from email.message import EmailMessage
from email.utils import format_datetime, formataddr, parseaddr
from typing import Any, NoReturn
from urllib.parse import quote, unquote, urlsplit

import httpx
import paho.mqtt.client as mqtt
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from alerts.messages import Notice, Rendered, action_label, render
from collector.broker import new_client, use_tls
from config.notify import (
    Channel,
    DingtalkChannel,
    EmailChannel,
    FeishuChannel,
    MqttChannel,
    WebhookChannel,
    WecomChannel,
)

__all__ = [
    "DeliveryError",
    "deliver",
    "mqtt_topic",
    "sign_webhook",
    "verify_webhook_signature",
    "webhook_payload",
]

log = logging.getLogger(__name__)

# Error codes in the robots' answers that mean "too fast, try later". Every other non-zero code
# (bad token, failed signature, keyword or IP filter, malformed message) needs a person.
WECOM_RETRY_CODES = frozenset({-1, 45009, 45033})  # system busy, API / concurrency rate limit
DINGTALK_RETRY_CODES = frozenset({-1, 130101, 410100})  # busy, >20 messages/min, flow control
FEISHU_RETRY_CODES = frozenset({9499, 11232})  # too many requests, send frequency limited
_RETRY_HTTP = frozenset({408, 425, 429})
_MIN_TOKEN = 16  # robot tokens are UUIDs or 64 hex digits; path words are shorter
_MIN_SCRUB = 4
# MQTT 5 reason codes that say "later" rather than "never": unspecified, implementation
# specific, server busy/unavailable, quota exceeded.
_MQTT_RETRY_REASONS = frozenset({0x80, 0x83, 0x88, 0x89, 0x97})
# paho reports MQTT 3.1.1 CONNACK codes as these MQTT 5 reasons too (3 "server unavailable" is
# 0x88).


class DeliveryError(Exception):
    """One delivery attempt failed. ``retryable`` tells the outbox whether to try again;
    ``retry_after`` is the far end's own hint (HTTP Retry-After), when it gave one.

    The message names the channel and the reason and never contains a secret or a tokenised
    URL.
    """

    def __init__(
        self,
        channel: str,
        reason: str,
        *,
        retryable: bool,
        retry_after: timedelta | None = None,
    ) -> None:
        super().__init__(f"channel {channel}: {reason}")
        self.channel = channel
        self.reason = reason
        self.retryable = retryable
        self.retry_after = retry_after


async def deliver(
    channel: Channel,
    notice: Notice,
    *,
    env: Mapping[str, str] | None = None,
    client: httpx.AsyncClient | None = None,
    now: datetime | None = None,
    tz: tzinfo | None = None,
) -> None:
    """Send ``notice`` through ``channel`` once; raise :class:`DeliveryError` if it fails.

    ``env`` holds the secrets the channel names (default ``os.environ``); ``client`` is reused
    for HTTP channels (default: a client for this call); ``now`` stamps signatures and the
    e-mail Date (default: the real clock); ``tz`` is the zone times are shown in (pass the
    site's; default: the zone of ``notice.at``).
    """
    attempt = _Attempt(channel, os.environ if env is None else env)
    when = now if now is not None else datetime.now(UTC)
    if when.tzinfo is None:
        raise ValueError("naive datetime: pass a timezone-aware time")
    zone = tz if tz is not None else notice.at.tzinfo
    assert zone is not None  # Notice refuses naive times
    rendered = render(notice, zone)
    if isinstance(channel, WebhookChannel):
        await _webhook(attempt, channel, notice, rendered, client, when)
    elif isinstance(channel, WecomChannel):
        await _wecom(attempt, channel, notice, rendered, client)
    elif isinstance(channel, DingtalkChannel):
        await _dingtalk(attempt, channel, notice, rendered, client, when)
    elif isinstance(channel, FeishuChannel):
        await _feishu(attempt, channel, notice, rendered, client, when)
    elif isinstance(channel, EmailChannel):
        await _email(attempt, channel, notice, rendered, when)
    elif isinstance(channel, MqttChannel):
        await _mqtt(attempt, channel, notice, rendered)
    else:  # pragma: no cover - the union is closed
        raise TypeError(f"unknown channel type {type(channel).__name__}")
    log.debug("notice %s delivered through %s", notice.key, channel.id)


# --------------------------------------------------------------------------------------------
# Secrets and errors


class _Attempt:
    """One delivery: reads secrets and remembers them, so that no error text can carry them."""

    def __init__(self, channel: Channel, env: Mapping[str, str]) -> None:
        self.channel = channel
        self.env = env
        self._secrets: list[str] = []

    def secret(self, name: str, what: str, *, hide: bool = True) -> str:
        """The value of environment variable ``name``; ``hide=False`` for user names, which
        are not secret and would otherwise blank out words such as 'facmon' in messages."""
        value = self.env.get(name)
        if not value:
            self.fail(f"environment variable {name} ({what}) is not set", retryable=False)
        if hide:
            self.hide(value)
        return value

    def hide(self, value: str) -> None:
        self._secrets.append(value)
        if "://" not in value:
            return
        # The token of a robot URL can show up on its own: a query value (WeCom key, DingTalk
        # access_token, also percent-decoded) or a path segment (Feishu's hook id).
        parts = urlsplit(value)
        pieces = [parts.query, parts.path, *parts.path.split("/")]
        for pair in parts.query.split("&"):
            token = pair.partition("=")[2]
            pieces += [token, unquote(token)]
        self._secrets += [p for p in pieces if len(p) >= _MIN_TOKEN]

    def scrub(self, text: str) -> str:
        # Shorter values would blank out ordinary words; facmon never writes a secret into an
        # error itself, this only catches a far end echoing one back.
        for s in sorted(set(self._secrets), key=len, reverse=True):
            if len(s) >= _MIN_SCRUB:
                text = text.replace(s, "***")
        return text

    def fail(
        self, reason: str, *, retryable: bool, retry_after: timedelta | None = None
    ) -> NoReturn:
        raise DeliveryError(
            self.channel.id, self.scrub(reason), retryable=retryable, retry_after=retry_after
        )


def _origin(url: str) -> str:
    """scheme://host[:port] of a URL: robots keep their token in the query or the path."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or "?"
        port = f":{parts.port}" if parts.port else ""
    except ValueError:  # e.g. a port that is not a number
        return "<malformed URL>"
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme}://{host}{port}"


def _retry_after(response: httpx.Response) -> timedelta | None:
    value = response.headers.get("retry-after", "")
    return timedelta(seconds=int(value)) if value.isdigit() else None


# --------------------------------------------------------------------------------------------
# HTTP


async def _post(
    attempt: _Attempt,
    client: httpx.AsyncClient | None,
    url: str,
    *,
    content: bytes,
    headers: Mapping[str, str],
    params: Mapping[str, str] | None = None,
    timeout: timedelta,
) -> httpx.Response:
    seconds = timeout.total_seconds()
    where = _origin(url)
    try:
        # httpx's params= replaces a URL's query, and robot URLs keep their token there.
        target = httpx.URL(url) if params is None else httpx.URL(url).copy_merge_params(params)
        if client is None:
            async with httpx.AsyncClient(timeout=seconds) as own:
                response = await own.post(target, content=content, headers=headers)
        else:
            response = await client.post(target, content=content, headers=headers, timeout=seconds)
    except httpx.TimeoutException:
        attempt.fail(f"no answer from {where} within {seconds:g}s", retryable=True)
    except httpx.InvalidURL:
        attempt.fail(f"invalid URL for {where}", retryable=False)
    except httpx.TransportError as e:
        attempt.fail(f"cannot reach {where}: {type(e).__name__}: {e}", retryable=True)
    if response.is_redirect:
        attempt.fail(
            f"{where} answered with a redirect (HTTP {response.status_code}); facmon does not "
            "follow redirects: fix the URL",
            retryable=False,
        )
    return response


def _http_status(attempt: _Attempt, response: httpx.Response, detail: str = "") -> None:
    """Fail unless ``response`` has a 2xx status."""
    status = response.status_code
    if 200 <= status < 300:
        return
    where = _origin(str(response.request.url))
    text = detail or " ".join(response.text.split())[:200]
    reason = f"{where} answered HTTP {status}" + (f": {text}" if text else "")
    attempt.fail(
        reason,
        retryable=status in _RETRY_HTTP or status >= 500,
        retry_after=_retry_after(response),
    )


def _json_body(payload: Mapping[str, Any]) -> bytes:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


_JSON_HEADERS = {"Content-Type": "application/json; charset=utf-8"}


# --------------------------------------------------------------------------------------------
# Generic webhook


def webhook_payload(notice: Notice, rendered: Rendered) -> dict[str, Any]:
    """The JSON document webhook and MQTT channels send (times in ISO 8601 with offset)."""
    ticket: dict[str, Any] | None = None
    if notice.ticket_id is not None or notice.ticket_number is not None:
        ticket = {
            "id": notice.ticket_id,
            "number": notice.ticket_number,
            "title": notice.title,
            "priority": notice.priority,
            "severity": notice.severity,
            "status": notice.status,
            "device": notice.device,
            "device_name": notice.device_name,
            "building": notice.building,
            "fault_class": notice.fault_class,
        }
    return {
        "idempotency_key": notice.key,
        "kind": notice.kind,
        "site": notice.site,
        "language": notice.language,
        "ticket": ticket,
        "recipient": {
            "id": notice.recipient_id,
            "name": notice.recipient_name,
            "phone": notice.recipient_phone,
            "email": notice.recipient_email,
        },
        "subject": rendered.subject,
        "text": rendered.text,
        "note": notice.note,
        "step": notice.step,
        "link": notice.link,
        "at": notice.at.isoformat(),
    }


def sign_webhook(secret: str, timestamp: str, body: bytes) -> str:
    """The X-Facmon-Signature value: ``sha256=`` and the hex HMAC-SHA256 of
    ``<timestamp>.<body>`` keyed with ``secret``."""
    mac = hmac.new(secret.encode("utf-8"), timestamp.encode("ascii") + b"." + body, "sha256")
    return "sha256=" + mac.hexdigest()


def verify_webhook_signature(
    secret: str,
    timestamp: str,
    body: bytes | str,
    header: str,
    *,
    now: datetime | None = None,
    max_age: timedelta = timedelta(minutes=5),
) -> bool:
    """Check a facmon webhook request, for receivers.

    ``timestamp`` is the X-Facmon-Timestamp header (Unix seconds), ``body`` the raw request body
    exactly as received (before any JSON parsing), ``header`` the X-Facmon-Signature header.
    The comparison takes constant time. Pass ``now`` to also refuse requests stamped more than
    ``max_age`` away from it, which stops a captured request from being replayed later; drop
    repeats of one delivery by the ``Idempotency-Key`` header.
    """
    if not timestamp.isdigit():
        return False
    if now is not None:
        sent = datetime.fromtimestamp(int(timestamp), UTC)
        if abs(now - sent) > max_age:
            return False
    raw = body.encode("utf-8") if isinstance(body, str) else body
    return hmac.compare_digest(sign_webhook(secret, timestamp, raw), header.strip())


# Idempotency keys go into a header: anything outside visible ASCII is percent-encoded.
_KEY_SAFE = "!#$&'()*+,-./:;<=>?@[]^_`{|}~"


async def _webhook(
    attempt: _Attempt,
    ch: WebhookChannel,
    notice: Notice,
    rendered: Rendered,
    client: httpx.AsyncClient | None,
    now: datetime,
) -> None:
    attempt.hide(ch.url)  # it may carry a token of the receiver's
    body = _json_body(webhook_payload(notice, rendered))
    timestamp = str(int(now.timestamp()))
    headers = dict(_JSON_HEADERS)
    headers.update(ch.headers)
    for name, var in ch.headers_env.items():
        headers[name] = attempt.secret(var, f"header {name}")
    headers["Idempotency-Key"] = quote(notice.key, safe=_KEY_SAFE)
    headers["X-Facmon-Timestamp"] = timestamp
    if ch.secret_env is not None:
        secret = attempt.secret(ch.secret_env, "webhook signing secret")
        headers["X-Facmon-Signature"] = sign_webhook(secret, timestamp, body)
    response = await _post(
        attempt, client, ch.url, content=body, headers=headers, timeout=ch.timeout
    )
    _http_status(attempt, response)


# --------------------------------------------------------------------------------------------
# Group robots


def _robot_url(attempt: _Attempt, ch: WecomChannel | DingtalkChannel | FeishuChannel) -> str:
    if ch.url_env is not None:
        url = attempt.secret(ch.url_env, "robot webhook URL")
        try:
            parts = urlsplit(url)
            valid = parts.scheme in ("http", "https") and bool(parts.hostname)
        except ValueError:
            valid = False
        if not valid:
            attempt.fail(
                f"environment variable {ch.url_env} is not an http(s) URL", retryable=False
            )
        return url
    assert ch.url is not None  # the model requires url or url_env
    attempt.hide(ch.url)
    return ch.url


def _robot_answer(attempt: _Attempt, response: httpx.Response, retry_codes: frozenset[int]) -> None:
    """Judge a robot's answer: HTTP status first, then the error code in the JSON body."""
    try:
        data = response.json()
    except ValueError:
        data = None
    code: Any = None
    message = ""
    if isinstance(data, dict):
        # WeCom and DingTalk: errcode/errmsg; Feishu: code/msg (older: StatusCode).
        for field in ("errcode", "code", "StatusCode"):
            if field in data:
                code = data[field]
                break
        message = str(data.get("errmsg") or data.get("msg") or data.get("StatusMessage") or "")
    where = _origin(str(response.request.url))
    if isinstance(code, int) and code in retry_codes:
        attempt.fail(
            f"{where} is rate limiting (code {code}: {message})",
            retryable=True,
            retry_after=_retry_after(response),
        )
    detail = f"code {code}: {message}" if code is not None else ""
    _http_status(attempt, response, detail)
    if code is None:
        text = " ".join(response.text.split())[:200]
        attempt.fail(f"{where} gave an answer that is not a robot's: {text!r}", retryable=False)
    if code != 0:
        attempt.fail(f"{where} refused the message (code {code}: {message})", retryable=False)


async def _wecom(
    attempt: _Attempt,
    ch: WecomChannel,
    notice: Notice,
    rendered: Rendered,
    client: httpx.AsyncClient | None,
) -> None:
    url = _robot_url(attempt, ch)
    payload: dict[str, Any]
    if ch.mention and notice.recipient_phone:
        # Only WeCom's text messages take mentioned_mobile_list; markdown can only @ a userid.
        payload = {
            "msgtype": "text",
            "text": {
                "content": rendered.text,
                "mentioned_mobile_list": [notice.recipient_phone],
            },
        }
    else:
        payload = {"msgtype": "markdown", "markdown": {"content": rendered.markdown}}
    response = await _post(
        attempt,
        client,
        url,
        content=_json_body(payload),
        headers=_JSON_HEADERS,
        timeout=ch.timeout,
    )
    _robot_answer(attempt, response, WECOM_RETRY_CODES)


def dingtalk_sign(secret: str, timestamp_ms: str) -> str:
    """DingTalk's 加签: base64 of HMAC-SHA256 keyed with the secret over
    ``"<timestamp>\\n<secret>"`` (sent URL-encoded as the ``sign`` query parameter)."""
    mac = hmac.new(secret.encode("utf-8"), f"{timestamp_ms}\n{secret}".encode(), "sha256")
    return base64.b64encode(mac.digest()).decode("ascii")


async def _dingtalk(
    attempt: _Attempt,
    ch: DingtalkChannel,
    notice: Notice,
    rendered: Rendered,
    client: httpx.AsyncClient | None,
    now: datetime,
) -> None:
    url = _robot_url(attempt, ch)
    params: dict[str, str] | None = None
    if ch.secret_env is not None:
        secret = attempt.secret(ch.secret_env, "robot signing secret")
        timestamp = str(int(now.timestamp() * 1000))
        sign = dingtalk_sign(secret, timestamp)
        attempt.hide(sign)
        params = {"timestamp": timestamp, "sign": sign}  # httpx percent-encodes the sign
    # DingTalk's markdown needs a blank line for a line break, and an @mention only shows when
    # the phone number is also in the text.
    text = rendered.markdown.replace("\n", "\n\n")
    mention = ch.mention and bool(notice.recipient_phone)
    if mention:
        text += f"\n\n@{notice.recipient_phone}"
    payload = {
        "msgtype": "markdown",
        "markdown": {"title": rendered.subject, "text": text},
        "at": {"atMobiles": [notice.recipient_phone] if mention else [], "isAtAll": False},
    }
    response = await _post(
        attempt,
        client,
        url,
        content=_json_body(payload),
        headers=_JSON_HEADERS,
        params=params,
        timeout=ch.timeout,
    )
    _robot_answer(attempt, response, DINGTALK_RETRY_CODES)


def feishu_sign(secret: str, timestamp_s: str) -> str:
    """Feishu's 签名校验: base64 of HMAC-SHA256 keyed with ``"<timestamp>\\n<secret>"`` over an
    empty message (the key is the string to sign, unlike DingTalk)."""
    mac = hmac.new(f"{timestamp_s}\n{secret}".encode(), b"", "sha256")
    return base64.b64encode(mac.digest()).decode("ascii")


_FEISHU_COLOUR = {"P1": "red", "P2": "orange", "P3": "yellow"}


async def _feishu(
    attempt: _Attempt,
    ch: FeishuChannel,
    notice: Notice,
    rendered: Rendered,
    client: httpx.AsyncClient | None,
    now: datetime,
) -> None:
    url = _robot_url(attempt, ch)
    # The card header shows the subject; the body starts after the headline.
    body = rendered.markdown.partition("\n")[2] or rendered.markdown
    if ch.mention and notice.recipient_email:
        body = f"<at email={notice.recipient_email}></at>\n{body}"
    if notice.kind in ("resolved", "acknowledged"):
        colour = "green"
    elif notice.kind == "test":
        colour = "blue"
    else:
        colour = _FEISHU_COLOUR.get(notice.priority or "", "blue")
    elements: list[dict[str, Any]] = [{"tag": "div", "text": {"tag": "lark_md", "content": body}}]
    if notice.link:
        elements.append(
            {
                "tag": "action",
                "actions": [
                    {
                        "tag": "button",
                        "text": {"tag": "plain_text", "content": action_label(notice)},
                        "type": "primary",
                        "url": notice.link,
                    }
                ],
            }
        )
    payload: dict[str, Any] = {}
    if ch.secret_env is not None:
        secret = attempt.secret(ch.secret_env, "robot signing secret")
        timestamp = str(int(now.timestamp()))
        sign = feishu_sign(secret, timestamp)
        attempt.hide(sign)
        payload.update(timestamp=timestamp, sign=sign)
    payload["msg_type"] = "interactive"
    payload["card"] = {
        "config": {"wide_screen_mode": True},
        "header": {"title": {"tag": "plain_text", "content": rendered.subject}, "template": colour},
        "elements": elements,
    }
    response = await _post(
        attempt,
        client,
        url,
        content=_json_body(payload),
        headers=_JSON_HEADERS,
        timeout=ch.timeout,
    )
    _robot_answer(attempt, response, FEISHU_RETRY_CODES)


# --------------------------------------------------------------------------------------------
# E-mail


def _message_id(key: str, sender: str) -> str:
    domain = parseaddr(sender)[1].rpartition("@")[2] or "facmon.invalid"
    return f"<{hashlib.sha256(key.encode('utf-8')).hexdigest()[:40]}.facmon@{domain}>"


def compose_email(
    ch: EmailChannel, notice: Notice, rendered: Rendered, now: datetime
) -> EmailMessage:
    """The e-mail of a notice; its Message-ID depends only on the idempotency key and sender."""
    if not notice.recipient_email:
        raise ValueError(f"{notice.recipient_id} has no e-mail address")
    msg = EmailMessage()
    msg["Subject"] = rendered.subject
    msg["From"] = ch.sender
    msg["To"] = formataddr((notice.recipient_name, notice.recipient_email))
    msg["Date"] = format_datetime(now)
    msg["Message-ID"] = _message_id(notice.key, ch.sender)
    msg["X-Facmon-Idempotency-Key"] = notice.key
    # RFC 3834: out-of-office robots must not answer an automatic page.
    msg["Auto-Submitted"] = "auto-generated"
    msg.set_content(rendered.text + "\n")
    return msg


def _smtp_code_error(attempt: _Attempt, what: str, code: int, text: bytes | str) -> NoReturn:
    said = text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text)
    attempt.fail(
        f"{what} (SMTP {code} {' '.join(said.split())[:200]})", retryable=400 <= code < 500
    )


def _send_email(
    attempt: _Attempt,
    ch: EmailChannel,
    msg: EmailMessage,
    login: tuple[str, str] | None,
) -> None:
    seconds = ch.timeout.total_seconds()
    where = f"{ch.host}:{ch.effective_port}"
    context = ssl.create_default_context(cafile=None if ch.ca_file is None else str(ch.ca_file))
    # socket.getfqdn(), smtplib's default EHLO name, can wait on DNS; the host name is enough.
    helo = socket.gethostname() or "localhost"
    try:
        smtp: smtplib.SMTP
        if ch.security == "ssl":
            smtp = smtplib.SMTP_SSL(
                ch.host, ch.effective_port, local_hostname=helo, timeout=seconds, context=context
            )
        else:
            smtp = smtplib.SMTP(ch.host, ch.effective_port, local_hostname=helo, timeout=seconds)
        with smtp:
            if ch.security == "starttls":
                smtp.starttls(context=context)
            if login is not None:
                smtp.login(*login)
            smtp.send_message(msg)
    except smtplib.SMTPNotSupportedError as e:
        attempt.fail(f"{where} does not support this ({e})", retryable=False)
    except smtplib.SMTPAuthenticationError as e:
        attempt.fail(
            f"{where} refused the login (SMTP {e.smtp_code}); check the user and password",
            retryable=400 <= e.smtp_code < 500,
        )
    except smtplib.SMTPRecipientsRefused as e:
        codes = [code for code, _ in e.recipients.values()]
        said = "; ".join(
            f"{code} {m.decode('utf-8', 'replace') if isinstance(m, bytes) else m}"
            for code, m in e.recipients.values()
        )
        attempt.fail(
            f"{where} refused the recipient ({said[:200]})",
            retryable=bool(codes) and all(400 <= c < 500 for c in codes),
        )
    except smtplib.SMTPResponseException as e:
        _smtp_code_error(attempt, f"{where} refused the message", e.smtp_code, e.smtp_error)
    except smtplib.SMTPServerDisconnected as e:
        attempt.fail(f"{where} closed the connection ({e})", retryable=True)
    except smtplib.SMTPException as e:
        attempt.fail(f"{where}: {type(e).__name__}: {e}", retryable=False)
    except ssl.SSLCertVerificationError as e:
        attempt.fail(
            f"cannot verify the TLS certificate of {where}: {e.verify_message}", retryable=False
        )
    except ssl.SSLError as e:  # e.g. ssl against a plain port: the config, not the moment
        attempt.fail(f"TLS with {where} failed: {e.reason or e}", retryable=False)
    except TimeoutError:
        attempt.fail(f"no answer from {where} within {seconds:g}s", retryable=True)
    except OSError as e:
        attempt.fail(f"cannot reach {where}: {type(e).__name__}: {e}", retryable=True)


async def _email(
    attempt: _Attempt, ch: EmailChannel, notice: Notice, rendered: Rendered, now: datetime
) -> None:
    if not notice.recipient_email:
        attempt.fail(f"{notice.recipient_id} has no e-mail address", retryable=False)
    login: tuple[str, str] | None = None
    if ch.username_env is not None:
        user = attempt.secret(ch.username_env, "SMTP user name", hide=False)
        password = (
            attempt.secret(ch.password_env, "SMTP password") if ch.password_env is not None else ""
        )
        login = (user, password)
    try:
        msg = compose_email(ch, notice, rendered, now)
    except ValueError as e:  # e.g. a line break in an address: header injection is refused
        attempt.fail(f"cannot compose the e-mail: {e}", retryable=False)
    await asyncio.to_thread(_send_email, attempt, ch, msg, login)


# --------------------------------------------------------------------------------------------
# MQTT


def mqtt_topic(ch: MqttChannel, notice: Notice) -> str:
    """The channel's topic template filled in for ``notice``; values cannot add levels or
    wildcards, and a missing value is '-'."""

    def level(value: object) -> str:
        text = "-" if value is None or value == "" else str(value)
        return "".join("_" if c in "/+#\x00" else c for c in text)

    return ch.topic.format(
        site=level(notice.site),
        recipient=level(notice.recipient_id),
        kind=level(notice.kind),
        priority=level(notice.priority),
        building=level(notice.building),
        device=level(notice.device),
        ticket=level(notice.ticket_number),
    )


class _Publish:
    """Callbacks of one short-lived paho connection (they run on paho's network thread)."""

    def __init__(self) -> None:
        self.connected = threading.Event()
        self.connack: ReasonCode | None = None
        self.published = threading.Event()
        self.puback: ReasonCode | None = None

    def on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.ConnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        self.connack = reason
        self.connected.set()

    def on_disconnect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.DisconnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        self.connected.set()  # wakes a waiter; connack stays None when CONNACK never came

    def on_publish(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        self.puback = reason
        self.published.set()


def _mqtt_client(ch: MqttChannel, login: tuple[str, str | None] | None) -> mqtt.Client:
    # A fresh id per attempt: two deliveries at once must not take each other's session.
    client_id = f"facmon-notify-{uuid.uuid4().hex[:16]}"
    client = new_client(client_id, protocol=ch.protocol, clean=True, reconnect=False)
    if login is not None:
        client.username_pw_set(*login)
    use_tls(client, ch.tls)
    return client


def _publish_mqtt(
    attempt: _Attempt,
    ch: MqttChannel,
    topic: str,
    payload: bytes,
    login: tuple[str, str | None] | None,
) -> None:
    seconds = ch.timeout.total_seconds()
    deadline = time.monotonic() + seconds
    where = f"{ch.host}:{ch.port}"
    client = _mqtt_client(ch, login)
    state = _Publish()
    client.on_connect = state.on_connect
    client.on_disconnect = state.on_disconnect
    client.on_publish = state.on_publish
    client.connect_timeout = seconds
    try:
        client.connect(ch.host, ch.port, keepalive=max(5, int(seconds) * 2))
    except ssl.SSLCertVerificationError as e:
        attempt.fail(
            f"cannot verify the TLS certificate of {where}: {e.verify_message}", retryable=False
        )
    except ssl.SSLError as e:
        attempt.fail(f"TLS with {where} failed: {e.reason or e}", retryable=False)
    except (TimeoutError, OSError) as e:
        attempt.fail(f"cannot reach the broker {where}: {type(e).__name__}: {e}", retryable=True)
    client.loop_start()
    try:
        if not state.connected.wait(max(0.0, deadline - time.monotonic())):
            attempt.fail(f"the broker {where} did not answer the connect", retryable=True)
        reason = state.connack
        if reason is None:
            attempt.fail(f"the broker {where} closed the connection", retryable=True)
        if reason.is_failure:
            attempt.fail(
                f"the broker {where} refused the connection: {reason}",
                retryable=reason.value in _MQTT_RETRY_REASONS,
            )
        info = client.publish(topic, payload, qos=ch.qos, retain=False)
        try:
            info.wait_for_publish(max(0.0, deadline - time.monotonic()))
        except (RuntimeError, ValueError) as e:
            attempt.fail(f"publish to {where} failed: {e}", retryable=True)
        if not info.is_published():
            what = "acknowledge" if ch.qos else "take"
            attempt.fail(
                f"the broker {where} did not {what} the message within {seconds:g}s",
                retryable=True,
            )
        # MQTT 5 PUBACK/PUBREC carry a reason, e.g. "Not authorized" for an ACL refusal.
        state.published.wait(max(0.0, deadline - time.monotonic()))
        ack = state.puback
        if ack is not None and ack.is_failure:
            attempt.fail(
                f"the broker {where} refused the message on {topic!r}: {ack}",
                retryable=ack.value in _MQTT_RETRY_REASONS,
            )
    finally:
        client.disconnect()
        client.loop_stop()


async def _mqtt(attempt: _Attempt, ch: MqttChannel, notice: Notice, rendered: Rendered) -> None:
    login: tuple[str, str | None] | None = None
    if ch.username_env is not None:
        user = attempt.secret(ch.username_env, "MQTT user name", hide=False)
        password = (
            attempt.secret(ch.password_env, "MQTT password")
            if ch.password_env is not None
            else None
        )
        login = (user, password)
    payload = _json_body(webhook_payload(notice, rendered))
    await asyncio.to_thread(_publish_mqtt, attempt, ch, mqtt_topic(ch, notice), payload, login)
