"""Last month's report by e-mail on the 1st at 08:00 (``reports.monthly.schedule``).

:class:`MonthlyMailer` is driven by a clock: ``tick()`` sends the report of the month before the
current one once the 1st of the month has reached 08:00 site time, and records the month in a
small state file only after the SMTP server accepted the message, so a restart neither repeats
nor skips a month (a process that was down on the 1st catches up when it comes back). The
e-mail carries the PDF and the CSV, and the headline figures in its text.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import smtplib
import ssl
from datetime import datetime, time, timedelta
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path
from zoneinfo import ZoneInfo

from config.reporting import MonthlySettings
from reports.context import ReportContext
from reports.monthly.build import build_monthly
from reports.monthly.model import MonthlyReport
from reports.monthly.render import filename, render_csv, render_pdf
from reports.period import Period, add_months

log = logging.getLogger(__name__)

SEND_AT = time(8, 0)  # site-local time on the 1st
CHECK_EVERY = timedelta(minutes=5)


def due_month(now: datetime, tz: ZoneInfo, last_sent: str | None) -> Period | None:
    """The month to send at ``now``: the previous month, from 08:00 on the 1st, unless sent."""
    local = now.astimezone(tz)
    if local.day == 1 and local.time() < SEND_AT:
        return None
    y, m = add_months(local.year, local.month, -1)
    label = f"{y:04d}-{m:02d}"
    if last_sent is not None and last_sent >= label:
        return None
    return Period.month(y, m, tz)


def summary_lines(report: MonthlyReport) -> list[str]:
    """The summary page's figures as 'label: value' lines, section by section."""
    lines: list[str] = []
    for s in report.summary.sections:
        lines.append(f"[{s.title}]")
        if not s.available:
            lines.append(f"  {s.reason}")
            continue
        for f in s.figures:
            detail = f" ({f.detail})" if f.detail else ""
            lines.append(f"  {f.label}: {f.text}{detail}")
    return lines


def compose(
    report: MonthlyReport, pdf: bytes, csv: bytes, settings: MonthlySettings
) -> EmailMessage:
    msg = EmailMessage()
    msg["Subject"] = f"{report.site_name} · {report.title}"
    msg["From"] = settings.mail_from
    msg["To"] = ", ".join(settings.email_to)
    msg["Date"] = format_datetime(report.generated_at)
    # The sender's domain, not the host's FQDN (which can take a DNS timeout to find).
    domain = settings.mail_from.rpartition("@")[2] or "localhost"
    msg["Message-ID"] = make_msgid(idstring=f"{report.site_id}.{report.month}", domain=domain)
    intro = (
        f"{report.site_name} {report.title}（{report.first_day} – {report.last_day}）。"
        "完整报告见附件 PDF，数据见附件 CSV。"
        if report.lang == "zh-CN"
        else f"{report.site_name}, {report.title} ({report.first_day} – {report.last_day}). "
        "The full report is the attached PDF; the figures are in the attached CSV."
    )
    msg.set_content("\n".join([intro, "", *summary_lines(report), ""]))
    msg.add_attachment(pdf, maintype="application", subtype="pdf", filename=filename(report, "pdf"))
    msg.add_attachment(csv, maintype="text", subtype="csv", filename=filename(report, "csv"))
    return msg


def send(msg: EmailMessage, settings: MonthlySettings, timeout: float = 30.0) -> None:
    with smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=timeout) as smtp:
        if settings.smtp_starttls:
            smtp.starttls(context=ssl.create_default_context())
        if settings.smtp_user:
            password = settings.smtp_password
            smtp.login(settings.smtp_user, password.get_secret_value() if password else "")
        smtp.send_message(msg)


class MonthlyMailer:
    """Sends each month's report once; ``state_file`` remembers the last month sent."""

    def __init__(self, rc: ReportContext, state_file: Path) -> None:
        self.rc = rc
        self.state_file = state_file

    def last_sent(self) -> str | None:
        try:
            state = json.loads(self.state_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        sent = state.get("last_sent") if isinstance(state, dict) else None
        return sent if isinstance(sent, str) else None

    def tick(self) -> str | None:
        """Send the report if one is due; the month sent, or None. SMTP errors propagate (the
        month stays unsent and the next tick tries again)."""
        settings = self.rc.config.reports.monthly
        if not settings.schedule or not settings.email_to:
            return None
        period = due_month(self.rc.clock(), self.rc.tz, self.last_sent())
        if period is None:
            return None
        report = build_monthly(self.rc, period, lang=self.rc.config.site.language)
        send(compose(report, render_pdf(report), render_csv(report), settings), settings)
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_suffix(".tmp")
        state = {"last_sent": period.label, "sent_at": self.rc.clock().isoformat()}
        tmp.write_text(json.dumps(state), encoding="utf-8")
        tmp.replace(self.state_file)
        log.info("monthly report %s e-mailed to %s", period.label, ", ".join(settings.email_to))
        return period.label


async def run_mailer(
    mailer: MonthlyMailer, stop: asyncio.Event, every: timedelta = CHECK_EVERY
) -> None:
    """Call ``mailer.tick`` every ``every`` (in a worker thread) until ``stop`` is set."""
    while not stop.is_set():
        try:
            await asyncio.to_thread(mailer.tick)
        except Exception:
            log.exception("monthly report e-mail failed; trying again in %s", every)
        with contextlib.suppress(TimeoutError):  # the wait ran out: time for the next tick
            await asyncio.wait_for(stop.wait(), every.total_seconds())
