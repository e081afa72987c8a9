"""What a notification says: one :class:`Notice` per recipient, rendered for a phone screen.

A notice is everything a channel needs to reach one person about one event, already resolved
(who is on call, which language, the console link), so delivery never reads the database. Its
``key`` is the idempotency key of D3 (group, episode, transition, receiver): a retried delivery
carries the same key, and receivers (webhook endpoints, mail clients through the Message-ID)
can drop the duplicate.

:func:`render` turns a notice into a subject, plain text (SMS-like, e-mail) and markdown (group
robots) in zh-CN or en, with times in the site's zone, the priority as P1/P2/P3 and one clear
call to action. Free text from the config or the device (titles, names, notes) is shortened so
that a page fits a phone screen, and markdown control characters in it are neutralised so a
device name cannot turn into a link or an @all.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Literal, get_args

from alerts.tickets import Priority

__all__ = ["KINDS", "Language", "Notice", "NoticeKind", "Rendered", "action_label", "render"]

NoticeKind = Literal[
    "page",
    "reminder",
    "escalation",
    "resolved",
    "acknowledged",
    "unacknowledged",
    "coverage_gap",
    "test",
]
Language = Literal["zh-CN", "en"]
KINDS: frozenset[str] = frozenset(get_args(NoticeKind))
_LANGUAGES: frozenset[str] = frozenset(get_args(Language))

# Longest free-text parts, in characters: a page should read on a lock screen without scrolling.
_TITLE_MAX = 60
_NAME_MAX = 40
_NOTE_MAX = 140


@dataclass(frozen=True, slots=True, kw_only=True)
class Notice:
    """One message to one recipient. ``at`` is when the event happened (aware)."""

    key: str
    kind: NoticeKind
    language: Language
    site: str
    title: str
    at: datetime
    recipient_id: str
    recipient_name: str
    ticket_id: int | None = None
    ticket_number: str | None = None
    priority: Priority | None = None
    severity: str | None = None
    status: str | None = None
    device: str | None = None
    device_name: str | None = None
    building: str | None = None
    fault_class: str | None = None
    link: str | None = None
    note: str = ""
    recipient_phone: str | None = None
    recipient_email: str | None = None
    step: str = ""

    def __post_init__(self) -> None:
        if not self.key:
            raise ValueError("a notice needs an idempotency key")
        if self.kind not in KINDS:
            raise ValueError(f"unknown notice kind {self.kind!r}")
        if self.language not in _LANGUAGES:
            raise ValueError(f"unknown language {self.language!r}")
        if self.at.tzinfo is None or self.at.utcoffset() is None:
            raise ValueError("naive datetime: pass a timezone-aware time")


@dataclass(frozen=True, slots=True)
class Rendered:
    subject: str
    text: str
    markdown: str


_KIND_LABEL: dict[Language, dict[str, str]] = {
    "zh-CN": {
        "page": "告警",
        "reminder": "提醒",
        "escalation": "升级",
        "resolved": "已恢复",
        "acknowledged": "已确认",
        "unacknowledged": "确认已失效",
        "coverage_gap": "值班空缺",
        "test": "测试",
    },
    "en": {
        "page": "Alert",
        "reminder": "Reminder",
        "escalation": "Escalated",
        "resolved": "Resolved",
        "acknowledged": "Acknowledged",
        "unacknowledged": "Not confirmed",
        "coverage_gap": "On-call gap",
        "test": "Test",
    },
}

_ACTION: dict[Language, dict[str, str]] = {
    "zh-CN": {
        "page": "请确认",
        "reminder": "到场后请在工单中登记",
        "escalation": "请确认",
        "resolved": "查看工单",
        "acknowledged": "查看工单",
        "unacknowledged": "请重新确认",
        "coverage_gap": "请安排值班",
        "test": "测试消息，无需操作",
    },
    "en": {
        "page": "Acknowledge",
        "reminder": "Record your arrival on the ticket",
        "escalation": "Acknowledge",
        "resolved": "View ticket",
        "acknowledged": "View ticket",
        "unacknowledged": "Acknowledge again",
        "coverage_gap": "Arrange on-call cover",
        "test": "Test message: no action needed",
    },
}

_SEVERITY: dict[Language, dict[str, str]] = {
    "zh-CN": {
        "critical": "紧急",
        "major": "重要",
        "minor": "次要",
        "warning": "警告",
        "info": "提示",
    },
    "en": {},
}

_STATUS: dict[Language, dict[str, str]] = {
    "zh-CN": {
        "NEW": "新建",
        "ASSIGNED": "已派单",
        "ACCEPTED": "已接单",
        "IN_PROGRESS": "处理中",
        "ON_HOLD": "挂起",
        "RESOLVED": "已解决",
        "CLOSED": "已关闭",
        "CANCELLED": "已取消",
        "REOPENED": "重新打开",
    },
    "en": {
        "NEW": "new",
        "ASSIGNED": "assigned",
        "ACCEPTED": "accepted",
        "IN_PROGRESS": "in progress",
        "ON_HOLD": "on hold",
        "RESOLVED": "resolved",
        "CLOSED": "closed",
        "CANCELLED": "cancelled",
        "REOPENED": "reopened",
    },
}

_FIELD: dict[Language, dict[str, str]] = {
    "zh-CN": {"device": "设备", "ticket": "工单", "time": "时间", "note": "备注"},
    "en": {"device": "Device", "ticket": "Ticket", "time": "Time", "note": "Note"},
}


def action_label(notice: Notice) -> str:
    """The call to action of a notice, e.g. '请确认' or 'Acknowledge' (for buttons)."""
    return _ACTION[notice.language][notice.kind]


def _short(text: str, limit: int) -> str:
    text = " ".join(text.split())  # newlines in a name or note would break the layout
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


_MD_ESCAPE = str.maketrans(
    {
        "\\": "\\\\",
        "*": "\\*",
        "_": "\\_",
        "`": "\\`",
        "[": "\\[",
        "]": "\\]",
        "#": "\\#",
        # Robots read <...> as mentions (<@userid>, <at id=all>) or colours: never from data.
        "<": "‹",
        ">": "›",
    }
)


def _md(text: str) -> str:
    return text.translate(_MD_ESCAPE)


def _lines(notice: Notice, tz: tzinfo) -> tuple[str, list[tuple[str, str]], str]:
    """(headline, [(label, value)], call-to-action text) shared by text and markdown."""
    lang = notice.language
    labels = _FIELD[lang]
    sep = "·"
    tag = _KIND_LABEL[lang][notice.kind]
    if notice.priority:
        tag = (
            f"{notice.priority}{sep}{tag}" if lang == "zh-CN" else f"{notice.priority} {sep} {tag}"
        )
    head = f"【{tag}】" if lang == "zh-CN" else f"[{tag}] "
    headline = head + _short(notice.title, _TITLE_MAX)

    rows: list[tuple[str, str]] = []
    where = [
        _short(p, _NAME_MAX) for p in (notice.device_name or notice.device, notice.building) if p
    ]
    if where:
        rows.append((labels["device"], f" {sep} ".join(where)))
    ticket = [notice.ticket_number or ""]
    if notice.severity:
        ticket.append(_SEVERITY[lang].get(notice.severity, notice.severity))
    if notice.status:
        ticket.append(_STATUS[lang].get(notice.status, notice.status))
    ticket = [t for t in ticket if t]
    if ticket:
        rows.append((labels["ticket"], f" {sep} ".join(ticket)))
    rows.append((labels["time"], notice.at.astimezone(tz).strftime("%Y-%m-%d %H:%M")))
    if notice.note:
        rows.append((labels["note"], _short(notice.note, _NOTE_MAX)))
    return headline, rows, action_label(notice)


def render(notice: Notice, tz: tzinfo) -> Rendered:
    """Subject, plain text and markdown of ``notice`` in its language, times in ``tz``."""
    lang = notice.language
    colon = "：" if lang == "zh-CN" else ": "
    headline, rows, action = _lines(notice, tz)
    subject = headline
    if notice.ticket_number and notice.ticket_number not in headline:
        subject += (
            f"（{notice.ticket_number}）" if lang == "zh-CN" else f" ({notice.ticket_number})"
        )

    text = [headline, *(f"{k}{colon}{v}" for k, v in rows)]
    md = [f"**{_md(headline)}**", *(f"{k}{colon}{_md(v)}" for k, v in rows)]
    if notice.step:
        text.append(_short(notice.step, _NAME_MAX))
        md.append(_md(_short(notice.step, _NAME_MAX)))
    if notice.link:
        text.append(f"{action}{colon}{notice.link}")
        md.append(f"[{action}]({notice.link})")
    else:
        text.append(action)
        md.append(f"**{action}**")
    return Rendered(subject=subject, text="\n".join(text), markdown="\n".join(md))
