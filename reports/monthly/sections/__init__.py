"""One adapter per section: section report model -> :class:`SectionView`.

Each module here (``energy``, ``savings``, ``uptime``, ``water``, ``maintenance``) has

* ``fetch(rc, period, building)``: calls its section report (``reports.energy.energy_report``
  ...), importing it only then, so a section whose report module is not installed costs that
  section only;
* ``view(report, inp) -> SectionView``: the adapter, from that report's model to the figures,
  tables and chart data of one page (``inp.building`` None = the portfolio summary);
* ``PER_BUILDING``: False when one site-wide report already breaks down by building (it is
  fetched once and every page reads its part), True when each page needs its own call.

:func:`run` isolates them: a fetch or view that raises shows that section as *not available*
with the reason, and the rest of the report is built.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

from reports.context import ReportContext
from reports.monthly.i18n import Tr
from reports.monthly.model import SectionKey, SectionView
from reports.period import Period

log = logging.getLogger(__name__)

SECTION_KEYS: tuple[SectionKey, ...] = ("energy", "savings", "uptime", "water", "maintenance")


@dataclass(frozen=True)
class SectionInput:
    rc: ReportContext
    period: Period
    building: str | None  # None: the whole site (portfolio summary)
    tr: Tr


Fetch = Callable[[ReportContext, Period, str | None], Any]
View = Callable[[Any, SectionInput], SectionView]


@dataclass(frozen=True)
class Section:
    key: SectionKey
    fetch: Fetch
    view: View
    per_building: bool = False


@dataclass(frozen=True)
class Fetched:
    report: Any = None
    error: Exception | None = None


# (section key, building or None) -> what the fetch gave. Shared by the pages of one report,
# and by the builds of one period in several languages (the figures do not depend on it).
Cache = MutableMapping[tuple[str, str | None], Fetched]


def default_section(key: SectionKey) -> Section:
    module = importlib.import_module(f"reports.monthly.sections.{key}")
    return Section(key, module.fetch, module.view, bool(module.PER_BUILDING))


def sections(overrides: dict[SectionKey, Section] | None = None) -> list[Section]:
    chosen = {k: default_section(k) for k in SECTION_KEYS}
    chosen.update(overrides or {})
    return list(chosen.values())


def unavailable(key: SectionKey, tr: Tr, reason: str) -> SectionView:
    return SectionView(key=key, title=tr(f"section.{key}"), available=False, reason=reason)


def _fetch(section: Section, inp: SectionInput, cache: Cache) -> Fetched:
    scope = inp.building if section.per_building else None
    hit = cache.get((section.key, scope))
    if hit is None:
        try:
            hit = Fetched(report=section.fetch(inp.rc, inp.period, scope))
        except Exception as e:
            if not _missing_module(e):
                log.exception("monthly report: section %s (%s) failed", section.key, scope)
            hit = Fetched(error=e)
        cache[(section.key, scope)] = hit
    return hit


def _missing_module(e: Exception) -> str | None:
    """The report module whose absence caused ``e``, if that is what happened."""
    if isinstance(e, ModuleNotFoundError) and e.name and e.name.startswith("reports."):
        return e.name
    return None


def run(section: Section, inp: SectionInput, cache: Cache) -> SectionView:
    """The section's view of one page, or a *not available* view saying why."""
    tr = inp.tr
    got = _fetch(section, inp, cache)
    if got.error is not None:
        missing = _missing_module(got.error)
        if missing:
            return unavailable(section.key, tr, tr("section.not_installed", module=missing))
        return unavailable(section.key, tr, tr("section.failed", error=_brief(got.error)))
    try:
        return section.view(got.report, inp)
    except Exception as e:
        log.exception("monthly report: section %s view (%s) failed", section.key, inp.building)
        return unavailable(section.key, tr, tr("section.failed", error=_brief(e)))


def _brief(e: BaseException) -> str:
    text = str(e).strip().splitlines()[0] if str(e).strip() else ""
    text = text if len(text) <= 160 else text[:157] + "..."
    return f"{type(e).__name__}: {text}" if text else type(e).__name__
