"""``facmon maintenance due``: which preventive jobs (config ``maintenance.schedules``) are
due or overdue, from the site's ticket database (alerts.preventive).

Kept out of ``facmon/cli.py``, which only registers the parser (:func:`add_parser`).
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime, timedelta
from typing import IO, Any
from zoneinfo import ZoneInfo

from alerts.preventive import Job, JobState
from facmon.cliargs import add_group, add_site_args, site_from_args


def add_parser(sub: Any) -> None:
    """Register ``maintenance due`` on the facmon command's subparsers."""
    msub = add_group(
        sub,
        "maintenance",
        summary="preventive maintenance: which jobs are due or overdue",
        description="Preventive maintenance from the maintenance.schedules of the site config "
        "and the tickets facmon opened for them (fault class preventive:<schedule id>).",
    )
    md = msub.add_parser(
        "due",
        help="list the jobs due within --days, and every open or overdue one",
        description="List every job (schedule x device) whose due day falls within --days "
        "days, and every job whose ticket is open, overdue or about to open, with its due day "
        "(site-local), state and ticket. States: overdue (ticket open past its due day), open "
        "(ticket open), due_now (its ticket opens at the next check of a running facmon), "
        "upcoming (its ticket opens later, on the day shown). Exits 1 when a job is overdue, "
        "so it can run from cron.",
        epilog="Example: facmon maintenance due --days 30 --config site.yaml",
    )
    md.add_argument("--days", type=int, default=14, help="how many days ahead to list (default 14)")
    md.add_argument(
        "--at",
        default="now",
        metavar="TIME",
        help="as of: now (default), YYYY-MM-DD or 'YYYY-MM-DD HH:MM' in the site's time zone, "
        "or ISO 8601 with an offset",
    )
    add_site_args(md)
    md.set_defaults(func=_cmd_due)


def _cmd_due(args: argparse.Namespace) -> int:
    from alerts.preventive import load_history, plan
    from alerts.tickets import TicketStore
    from facmon.oncall_view import parse_when

    cfg = site_from_args(args, "maintenance of")
    if cfg is None:
        return 2
    if not 0 <= args.days <= 3660:
        print("--days: must be 0..3660", file=sys.stderr)
        return 2
    tz = ZoneInfo(cfg.site.timezone)
    try:
        at = parse_when(args.at, tz, datetime.now(UTC))
    except ValueError as e:
        print(f"--at: {e}", file=sys.stderr)
        return 2
    if not cfg.maintenance.schedules:
        print("no maintenance schedules in the config (maintenance.schedules)")
        return 0
    tickets = TicketStore.for_site(cfg)
    try:
        jobs = plan(cfg, load_history(tickets), at)
    finally:
        tickets.close()
    return print_due(jobs, at, tz, args.days, cfg.site.language, sys.stdout)


def print_due(
    jobs: list[Job], at: datetime, tz: ZoneInfo, days: int, language: str, out: IO[str]
) -> int:
    """Print the jobs worth listing at ``at``; 1 when one is overdue, else 0."""
    horizon = at.astimezone(tz).date() + timedelta(days=days)
    listed = sorted(
        (j for j in jobs if j.state is not JobState.UPCOMING or j.due <= horizon),
        key=lambda j: (j.due, j.schedule.id, j.device.id),
    )
    print(
        f"preventive maintenance as of {at.astimezone(tz):%Y-%m-%d %H:%M} ({tz.key}): "
        f"{len(listed)} job(s) open or due by {horizon.isoformat()}",
        file=out,
    )
    if not listed:
        return 0
    width_s = max(len(j.schedule.id) for j in listed)
    width_d = max(len(j.device.id) for j in listed)
    for j in listed:
        print(
            f"{j.due.isoformat()}  {j.state.value:<8}  {j.schedule.id:<{width_s}}  "
            f"{j.device.id:<{width_d}}  {_detail(j, at, tz)}  ({j.schedule.title(language)})",
            file=out,
        )
    return 1 if any(j.state is JobState.OVERDUE for j in listed) else 0


def _detail(job: Job, at: datetime, tz: ZoneInfo) -> str:
    t = job.ticket
    if t is not None:
        if job.state is JobState.OVERDUE:
            late = (at - job.deadline).total_seconds() / 86400
            return f"{t.number} {t.status.value}, {late:.1f} d late"
        return f"{t.number} {t.status.value}"
    if job.state is JobState.DUE_NOW:
        return "ticket opens at the next check"
    return f"ticket opens {job.opens_at.astimezone(tz):%Y-%m-%d}"
