"""``facmon notify test CHANNEL``: send a test message through one of the site's channels, so
a new robot, webhook, mail server or topic is proven before the first real page needs it.

Kept out of ``facmon/cli.py``, which only registers the parser (:func:`add_parser`).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from facmon.cliargs import add_group, add_site_args, site_from_args


def add_parser(sub: Any) -> None:
    """Register ``notify test`` on the facmon command's subparsers."""
    nsub = add_group(
        sub,
        "notify",
        summary="check the channels pages are delivered through",
        description="Channels (config 'channels:'): webhook, WeCom, DingTalk, Feishu, e-mail "
        "and MQTT. Secrets come from the environment variables the config names.",
    )
    t = nsub.add_parser(
        "test",
        help="send one test message through a channel",
        description="Send a message of kind 'test' through CHANNEL, addressed to --to (a "
        "person id; default: the first person whose contacts include the channel), in their "
        "language. Exits 0 when the far end accepted it, 1 when it refused or could not be "
        "reached (the reason is printed; no secret is), 2 on a usage or config error.",
        epilog="Example: facmon notify test wecom-engineering --to li-na --config site.yaml",
    )
    t.add_argument("channel", metavar="CHANNEL", help="a channel id from the site config")
    t.add_argument("--to", default=None, metavar="PERSON", help="person id (oncall.people)")
    add_site_args(t)
    t.set_defaults(func=_cmd_test)


def _cmd_test(args: argparse.Namespace) -> int:
    from alerts.channels import DeliveryError, deliver
    from alerts.messages import Notice, render

    cfg = site_from_args(args, "channels of")
    if cfg is None:
        return 2
    channels = {c.id: c for c in cfg.channels}
    channel = channels.get(args.channel)
    if channel is None:
        known = ", ".join(sorted(channels)) or "none configured"
        print(f"unknown channel {args.channel!r} (known: {known})", file=sys.stderr)
        return 2
    people = {p.id: p for p in cfg.oncall.people}
    if args.to is not None:
        person = people.get(args.to)
        if person is None:
            print(f"unknown person {args.to!r} (known: {', '.join(people)})", file=sys.stderr)
            return 2
    else:
        person = next((p for p in people.values() if args.channel in p.contacts), None)
    now = datetime.now(UTC)
    tz = ZoneInfo(cfg.site.timezone)
    language = (person.language if person else None) or cfg.site.language
    notice = Notice(
        key=f"test-{args.channel}-{int(now.timestamp())}",
        kind="test",
        language=language,
        site=cfg.site.id,
        title="facmon 测试消息" if language == "zh-CN" else "facmon test message",
        at=now,
        recipient_id=person.id if person else args.channel,
        recipient_name=person.name if person else args.channel,
        recipient_phone=person.phone if person else None,
        recipient_email=person.email if person else None,
    )
    who = f" to {notice.recipient_name}" if person else ""
    try:
        asyncio.run(deliver(channel, notice, env=dict(os.environ), now=now, tz=tz))
    except DeliveryError as e:
        again = "worth retrying" if e.retryable else "will not succeed as configured"
        print(f"{args.channel}: not delivered ({again}): {e}")
        return 1
    print(f"{args.channel} ({channel.type}): delivered{who}")
    print(render(notice, tz).text)
    return 0
