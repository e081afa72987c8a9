"""InfluxQL text for dashboard queries, over facmon's layout in InfluxDB (``store.influx``):
measurement = metric, field ``value`` (and ``quality``), tags ``device``, ``unit``, ``site``,
``building``, ``floor``, ``kind``, ``tenant`` and the device's own tags.

Queries keep Grafana's macros (``$timeFilter``, ``$__interval``) and template variables
(``$building`` ...) as text: Grafana substitutes them per request. Literal names go through
:func:`store.influx.quote_ident` / :func:`~store.influx.quote_literal`, so a device id or a
tag value is never read as InfluxQL.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from config.models import Selector
from store.influx import quote_ident, quote_literal
from store.reading import Quality

TIME_FILTER = "$timeFilter"
INTERVAL = "$__interval"
# BAD samples are kept for audit and left out of every report; the dashboards agree with them.
GOOD_ENOUGH = f'"quality" < {int(Quality.BAD)}'


def eq(tag: str, value: str) -> str:
    return f"{quote_ident(tag)} = {quote_literal(value)}"


def any_of(tag: str, values: Iterable[str]) -> str:
    """``tag`` equals one of ``values`` (literal comparisons: no regex escaping to get wrong)."""
    vals = sorted(set(values))
    if not vals:
        raise ValueError(f"any_of({tag!r}) needs at least one value")
    if len(vals) == 1:
        return eq(tag, vals[0])
    return "(" + " OR ".join(eq(tag, v) for v in vals) + ")"


def matches_variable(tag: str, variable: str) -> str:
    """``tag`` matches a multi-value template variable, Grafana's regex form ``/^$var$/``."""
    return f"{quote_ident(tag)} =~ /^${variable}$/"


def selector_conditions(select: Selector) -> list[str]:
    """A rule's device selector as conditions on the stored tags (``kind``, ``building``,
    ``device`` and the device's own tags, which every reading carries)."""
    out: list[str] = []
    if select.kinds:
        out.append(any_of("kind", select.kinds))
    if select.buildings:
        out.append(any_of("building", select.buildings))
    if select.devices:
        out.append(any_of("device", select.devices))
    out.extend(eq(k, v) for k, v in sorted(select.tags.items()))
    return out


def where(*conditions: str) -> str:
    parts = [c for c in conditions if c]
    return " WHERE " + " AND ".join(parts) if parts else ""


def source(measurement: str) -> str:
    """A measurement name, or a ``/regex/`` of them (e.g. ``/^current_[abc]$/``) as is."""
    if measurement.startswith("/") and measurement.endswith("/") and len(measurement) > 2:
        return measurement
    return quote_ident(measurement)


def series_by_interval(
    fn: str,
    measurement: str,
    conditions: Sequence[str],
    *,
    every: str = INTERVAL,
    fill: str = "null",
    tz: str | None = None,
    by: Sequence[str] = ("device",),
    scale: str = "",
) -> str:
    """``SELECT fn("value")`` per ``every`` and device, over the dashboard's range."""
    group = ", ".join([f"time({every})", *(quote_ident(t) for t in by)])
    return (
        f'SELECT {fn}("value"){scale} FROM {source(measurement)}'
        + where(*conditions, GOOD_ENOUGH, TIME_FILTER)
        + f" GROUP BY {group} fill({fill})"
        + (f" tz({quote_literal(tz)})" if tz else "")
    )


def last_per_device(measurement: str, conditions: Sequence[str]) -> str:
    """The newest value of each device in the range: the inner query of the "now" figures."""
    return (
        f'SELECT last("value") FROM {source(measurement)}'
        + where(*conditions, GOOD_ENOUGH, TIME_FILTER)
        + ' GROUP BY "device"'
    )


def counter_per_day(measurement: str, conditions: Sequence[str], tz: str) -> str:
    """A counter's growth per local day: the difference of its last values at consecutive
    day ends (a reset counts from zero instead of going negative)."""
    return (
        f'SELECT non_negative_difference(last("value")) FROM {source(measurement)}'
        + where(*conditions, GOOD_ENOUGH, TIME_FILTER)
        + f' GROUP BY time(1d), "device" fill(none) tz({quote_literal(tz)})'
    )


def tag_values(key: str, conditions: Sequence[str]) -> str:
    return f"SHOW TAG VALUES WITH KEY = {quote_ident(key)}" + where(*conditions)


def over_levels(column: str, levels: Mapping[str, float], high: bool) -> str:
    """``column`` beyond a per-device level: ``("device" = 'a' AND "last" > 225) OR ...``, or
    one comparison when every device has the same level."""
    op = ">" if high else "<"
    distinct = set(levels.values())
    if len(distinct) == 1:
        return f"{quote_ident(column)} {op} {_number(distinct.pop())}"
    parts = [
        f"({eq('device', d)} AND {quote_ident(column)} {op} {_number(v)})"
        for d, v in sorted(levels.items())
    ]
    return "(" + " OR ".join(parts) + ")"


def _number(v: float) -> str:
    return repr(float(v)) if v != int(v) else str(int(v))
