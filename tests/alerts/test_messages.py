"""Rendering of notices: zh-CN and en, site-local time, priority, call to action, phone size."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from alerts.messages import Notice, action_label, render

SHANGHAI = ZoneInfo("Asia/Shanghai")
AT = datetime(2026, 11, 27, 11, 5, 30, tzinfo=UTC)  # 19:05 in Shanghai


def notice(**changes: object) -> Notice:
    base = Notice(
        key="grp1:ep7:firing:zhang",
        kind="page",
        language="zh-CN",
        site="riverside",
        title="电梯困人",
        at=AT,
        recipient_id="zhang",
        recipient_name="张工",
        recipient_phone="13800000000",
        ticket_id=123,
        ticket_number="WO-000123",
        priority="P1",
        severity="critical",
        status="NEW",
        device="lift-1",
        device_name="1号客梯",
        building="A座",
        fault_class="entrapment",
        link="https://facmon.example.com/console/tickets/123",
        step="第 2 步，共 4 步",
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def test_a_page_in_chinese_says_what_where_when_and_asks_to_acknowledge() -> None:
    r = render(notice(), SHANGHAI)
    assert r.subject == "【P1·告警】电梯困人（WO-000123）"
    assert r.text.splitlines() == [
        "【P1·告警】电梯困人",
        "设备：1号客梯 · A座",
        "工单：WO-000123 · 紧急 · 新建",
        "时间：2026-11-27 19:05",
        "第 2 步，共 4 步",
        "请确认：https://facmon.example.com/console/tickets/123",
    ]
    assert r.markdown.splitlines()[0] == "**【P1·告警】电梯困人**"
    assert r.markdown.splitlines()[-1] == (
        "[请确认](https://facmon.example.com/console/tickets/123)"
    )


def test_a_page_in_english() -> None:
    r = render(
        notice(
            language="en",
            title="Lift 1 entrapment",
            device_name="Lift 1",
            building="Tower A",
            step="step 2 of 4",
            note="Door sensor reports a person inside",
        ),
        SHANGHAI,
    )
    assert r.subject == "[P1 · Alert] Lift 1 entrapment (WO-000123)"
    assert r.text.splitlines() == [
        "[P1 · Alert] Lift 1 entrapment",
        "Device: Lift 1 · Tower A",
        "Ticket: WO-000123 · critical · new",
        "Time: 2026-11-27 19:05",
        "Note: Door sensor reports a person inside",
        "step 2 of 4",
        "Acknowledge: https://facmon.example.com/console/tickets/123",
    ]


@pytest.mark.parametrize(
    ("kind", "zh", "en"),
    [
        ("page", "请确认", "Acknowledge"),
        ("escalation", "请确认", "Acknowledge"),
        ("unacknowledged", "请重新确认", "Acknowledge again"),
        ("reminder", "到场后请在工单中登记", "Record your arrival on the ticket"),
        ("resolved", "查看工单", "View ticket"),
        ("acknowledged", "查看工单", "View ticket"),
        ("coverage_gap", "请安排值班", "Arrange on-call cover"),
        ("test", "测试消息，无需操作", "Test message: no action needed"),
    ],
)
def test_every_kind_has_a_call_to_action_in_both_languages(kind: str, zh: str, en: str) -> None:
    assert action_label(notice(kind=kind)) == zh
    assert action_label(notice(kind=kind, language="en")) == en
    assert render(notice(kind=kind), SHANGHAI).text.endswith(f"{zh}：{notice().link}")


def test_a_coverage_gap_without_ticket_or_link() -> None:
    gap = notice(
        kind="coverage_gap",
        language="en",
        title="Nobody on call 2026-11-28 20:00-08:00",
        ticket_id=None,
        ticket_number=None,
        priority=None,
        severity=None,
        status=None,
        device=None,
        device_name=None,
        building=None,
        link=None,
        step="",
    )
    r = render(gap, SHANGHAI)
    assert r.subject == "[On-call gap] Nobody on call 2026-11-28 20:00-08:00"
    assert r.text.splitlines() == [
        "[On-call gap] Nobody on call 2026-11-28 20:00-08:00",
        "Time: 2026-11-27 19:05",
        "Arrange on-call cover",
    ]
    assert r.markdown.splitlines()[-1] == "**Arrange on-call cover**"


def test_long_text_is_cut_to_fit_a_phone_screen() -> None:
    r = render(notice(title="告" * 200, note="备注" * 200, device_name="梯\n" * 100), SHANGHAI)
    lines = r.text.splitlines()
    assert len(lines) <= 8
    assert all(len(line) <= 160 for line in lines)
    assert lines[0].endswith("…") and any(line.startswith("备注：") for line in lines)


def test_markdown_from_device_data_cannot_link_or_mention() -> None:
    r = render(
        notice(device_name="[点我](http://evil) <at id=all></at> <@all>", title="**x**"), SHANGHAI
    )
    assert r"\[点我\](http://evil)" in r.markdown  # escaped: shown, not a link
    assert "<at" not in r.markdown and "<@" not in r.markdown
    assert r"\*\*x\*\*" in r.markdown
    # The plain text keeps the name as written.
    assert "[点我](http://evil)" in r.text


def test_times_are_shown_in_the_zone_given() -> None:
    assert "Time: 2026-11-27 11:05" in render(notice(language="en"), UTC).text


def test_a_notice_needs_an_aware_time_a_key_and_a_known_kind() -> None:
    with pytest.raises(ValueError, match="naive"):
        notice(at=datetime(2026, 11, 27, 11, 5))
    with pytest.raises(ValueError, match="idempotency key"):
        notice(key="")
    with pytest.raises(ValueError, match="kind"):
        notice(kind="sms")
