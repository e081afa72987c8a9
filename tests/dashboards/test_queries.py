"""Every query of the generated dashboards, run the way Grafana runs it, against a real influxd
holding a day of the demo site (tests/dashboards/conftest.py).

Grafana's part is done here by hand, as its InfluxDB datasource documents it: ``$timeFilter``
becomes ``time >= <from>ms and time <= <to>ms``; ``$__interval`` the interval for the range
(never below the panel's ``interval``); a multi-value variable set to All its ``allValue``
verbatim, a chosen value regex-escaped inside ``/^...$/``; a panel with ``timeFrom: now/d``
queries from local midnight in the dashboard's time zone.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from config import SiteConfig
from dashboards import generate
from dashboards.model import Dashboard, InfluxQLTarget, Panel
from tests.dashboards.conftest import FAULTY_LIFT, DemoData, load_demo

RANGE_INTERVAL = "1m"  # what Grafana picks for 24 hours on a panel about 1000 px wide
_REGEX_SPECIAL = re.compile(r"[\\^$*+?.()|\[\]{}/]")


def _ms(t: datetime) -> int:
    return int(t.timestamp() * 1000)


def _seconds(interval: str) -> float:
    n, unit = int(interval[:-1]), interval[-1]
    return n * {"s": 1, "m": 60, "h": 3600, "d": 86400}[unit]


def render(
    text: str,
    start: datetime,
    end: datetime,
    variables: dict[str, str] | None = None,
    interval: str = RANGE_INTERVAL,
) -> str:
    """``text`` with Grafana's macros and the template variables substituted."""
    out = text.replace("$timeFilter", f"time >= {_ms(start)}ms and time <= {_ms(end)}ms")
    out = out.replace("$__interval", interval)
    for name, value in sorted((variables or {}).items(), key=lambda kv: -len(kv[0])):
        out = out.replace(f"${name}", value)
    assert not re.search(r"\$[A-Za-z_{]", out), f"unsubstituted variable in {out}"
    return out


def chosen(value: str) -> str:
    """A single value picked in a multi-value variable, as Grafana puts it in a regex."""
    return _REGEX_SPECIAL.sub(lambda m: "\\" + m.group(0), value)


def all_of(board: Dashboard) -> dict[str, str]:
    return {v.name: v.allValue or ".*" for v in board.templating.list}


def run(data: DemoData, q: str) -> list[dict[str, Any]]:
    body = data.server.query(q, db=data.db, method="POST")
    return [s for r in body["results"] for s in r.get("series") or ()]


def panel_range(data: DemoData, board: Dashboard, panel: Panel) -> tuple[datetime, datetime]:
    if panel.timeFrom == "now/d":
        tz = ZoneInfo(board.timezone)
        local = data.end.astimezone(tz)
        return local.replace(hour=0, minute=0, second=0, microsecond=0), data.end
    assert panel.timeFrom is None, panel.timeFrom
    return data.start, data.end


def panel_interval(panel: Panel) -> str:
    if panel.interval and _seconds(panel.interval) > _seconds(RANGE_INTERVAL):
        return panel.interval
    return RANGE_INTERVAL


def _cases(config: SiteConfig) -> list[tuple[str, str, str]]:
    return [
        (b.uid, str(p.id), t.refId)
        for b in generate(config)
        for p in b.all_panels()
        for t in p.targets
        if isinstance(t, InfluxQLTarget)
    ]


def _board(config: SiteConfig, uid: str) -> Dashboard:
    return next(b for b in generate(config) if b.uid == uid)


def test_the_demo_data_is_there(demo_influx: DemoData) -> None:
    assert demo_influx.samples > 15_000  # 26 h at 5 min: 7 devices, about 60 metrics
    lifts = demo_influx.server.count(demo_influx.db, "poll_latency")
    assert lifts.keys() >= {"mall-main-meter", FAULTY_LIFT, "outdoor-temp"}


@pytest.mark.parametrize(("uid", "panel_id", "ref"), _cases(load_demo()))
def test_every_panel_query_returns_series(
    demo_influx: DemoData, demo_site: SiteConfig, uid: str, panel_id: str, ref: str
) -> None:
    board = _board(demo_site, uid)
    panel = next(p for p in board.all_panels() if str(p.id) == panel_id)
    target = next(t for t in panel.targets if isinstance(t, InfluxQLTarget) and t.refId == ref)
    start, end = panel_range(demo_influx, board, panel)
    q = render(target.query, start, end, all_of(board), panel_interval(panel))
    series = run(demo_influx, q)
    assert series, f"{board.title} / {panel.title} / {ref}: no series from\n{q}"
    values = [v for s in series for row in s["values"] for v in row[1:] if v is not None]
    assert values, f"{panel.title}: only nulls from\n{q}"


def test_the_demo_has_every_dashboard_and_the_rated_current_panel(demo_site: SiteConfig) -> None:
    boards = {b.uid: b for b in generate(demo_site)}
    assert set(boards) == {
        f"fm-demo-{r}" for r in ("overview", "electrical", "elevators", "water", "health")
    }
    titles = {p.title for p in boards["fm-demo-electrical"].all_panels()}
    assert "Phase currents, % of rating" in titles
    assert "Temperatures (shafts, rooms, outdoor)" in titles


def test_a_rated_current_share_is_current_over_rating(
    demo_influx: DemoData, demo_site: SiteConfig
) -> None:
    board = _board(demo_site, "fm-demo-electrical")
    panel = next(p for p in board.all_panels() if p.title == "Phase currents, % of rating")
    raw = next(p for p in board.all_panels() if p.title == "Phase currents")
    variables = all_of(board)
    amps = {
        (s["tags"]["device"], s["name"]): [v for _, v in s["values"]]
        for s in run(
            demo_influx,
            render(
                raw.targets[0].query.replace('mean("value")', 'max("value")'),  # type: ignore[union-attr]
                demo_influx.start,
                demo_influx.end,
                variables,
            ),
        )
    }
    ratings = {d.id: d.ratings["current"] for d in demo_site.devices if "current" in d.ratings}
    for t in panel.targets:
        assert isinstance(t, InfluxQLTarget)
        for s in run(demo_influx, render(t.query, demo_influx.start, demo_influx.end, variables)):
            dev = s["tags"]["device"]
            got = [v for _, v in s["values"]]
            want = [None if a is None else a * 100 / ratings[dev] for a in amps[(dev, s["name"])]]
            assert got == pytest.approx(want)


def test_variables_list_the_configured_devices_and_narrow_each_other(
    demo_influx: DemoData, demo_site: SiteConfig
) -> None:
    for board in generate(demo_site):
        if not board.templating.list:
            continue
        kinds = {
            "fm-demo-electrical": {"power_meter", "sensor"},
            "fm-demo-elevators": {"elevator"},
            "fm-demo-water": {"water_meter"},
            "fm-demo-health": {"power_meter", "sensor", "elevator", "water_meter"},
        }[board.uid]
        devices = [d for d in demo_site.devices if d.kind in kinds]
        everything = all_of(board)

        def values(name: str, chosen_vars: dict[str, str], board: Dashboard = board) -> set[str]:
            var = next(v for v in board.templating.list if v.name == name)
            q = render(var.query, demo_influx.start, demo_influx.end, chosen_vars)
            return {row[1] for s in run(demo_influx, q) for row in s["values"]}

        assert values("building", everything) == {d.location.building for d in devices}
        assert values("device", everything) == {d.id for d in devices}
        for building in {d.location.building for d in devices}:
            narrowed = {**everything, "building": chosen(building)}
            here = [d for d in devices if d.location.building == building]
            assert values("floor", narrowed) == {d.location.floor for d in here}
            assert values("device", narrowed) == {d.id for d in here}


def test_a_chosen_device_narrows_the_panels_to_it(
    demo_influx: DemoData, demo_site: SiteConfig
) -> None:
    board = _board(demo_site, "fm-demo-elevators")
    panel = next(p for p in board.all_panels() if p.title == "Service mode")
    q = panel.targets[0]
    assert isinstance(q, InfluxQLTarget)
    lift = demo_site.device(FAULTY_LIFT)
    variables = {
        **all_of(board),
        "building": chosen(lift.location.building),
        "device": chosen(lift.id),
    }
    series = run(demo_influx, render(q.query, demo_influx.start, demo_influx.end, variables))
    assert {s["tags"]["device"] for s in series} == {FAULTY_LIFT}


def test_rule_annotations_mark_the_fault(demo_influx: DemoData, demo_site: SiteConfig) -> None:
    seen: dict[str, set[str]] = {}
    for board in generate(demo_site):
        for a in board.annotations.list:
            q = render(a.target.query, demo_influx.start, demo_influx.end, all_of(board))
            series = run(demo_influx, q)  # every annotation query runs without an error
            for s in series:
                cols = s["columns"]
                assert {"time", a.target.textColumn, a.target.tagsColumn} <= set(cols)
                devices = {row[cols.index("device")] for row in s["values"]}
                seen.setdefault(f"{board.uid}/{a.name}", set()).update(devices)
    fault = next(r.name for r in demo_site.rules if r.metric == "fault_code")
    trapped = next(r.name for r in demo_site.rules if r.metric == "entrapment")
    for uid in ("fm-demo-overview", "fm-demo-elevators"):
        assert FAULTY_LIFT in seen[f"{uid}/{fault}"]
        assert FAULTY_LIFT in seen[f"{uid}/{trapped}"]


def test_the_overview_counts_the_tripping_rules_per_building(
    demo_influx: DemoData, demo_site: SiteConfig
) -> None:
    board = _board(demo_site, "fm-demo-overview")
    tripping = [p for p in board.all_panels() if p.title == "Rules tripping now"]
    assert len(tripping) == 1  # only the mall tower has devices with rules (lifts, busbar)
    for t in tripping[0].targets:
        assert isinstance(t, InfluxQLTarget)
        series = run(demo_influx, render(t.query, demo_influx.start, demo_influx.end))
        # The one faulty lift (entrapment included), the one hot busbar.
        assert series[0]["values"][0][1] == 1
    down = next(p for p in board.all_panels() if p.title == "Devices down")
    t = down.targets[0]
    assert isinstance(t, InfluxQLTarget)
    assert (
        run(demo_influx, render(t.query, demo_influx.start, demo_influx.end))[0]["values"][0][1]
        == 0
    )


def test_default_rules_run_as_annotations_and_rated_levels(
    demo_influx: DemoData, demo_site: SiteConfig
) -> None:
    """With the shipped default rules on, the rated phase-current rules become annotations with
    a level per meter (90 % of its rating), and every query still runs."""
    site = demo_site.model_copy(update={"default_rules": True})
    boards = {b.uid: b for b in generate(site)}
    electrical = boards["fm-demo-electrical"]
    names = {a.name for a in electrical.annotations.list}
    phase_a = next(a for a in electrical.annotations.list if "current_a" in a.target.query)
    assert "720" in phase_a.target.query and "450" in phase_a.target.query  # 0.9 x 800, 500
    assert len(names) >= 3
    share = next(p for p in electrical.all_panels() if p.title == "Phase currents, % of rating")
    steps = share.fieldConfig.defaults.thresholds
    assert steps is not None and [s.value for s in steps.steps] == [None, 90.0, 100.0]
    for board in boards.values():  # what the default rules add: annotations, tripping counts
        variables = all_of(board)
        texts = [a.target.query for a in board.annotations.list] + [
            t.query
            for p in board.all_panels()
            if p.title == "Rules tripping now"
            for t in p.targets
            if isinstance(t, InfluxQLTarget)
        ]
        for text in texts:
            run(demo_influx, render(text, demo_influx.start, demo_influx.end, variables))


def test_the_health_dashboard_charts_facmons_own_figures(
    demo_influx: DemoData, demo_site: SiteConfig
) -> None:
    """The process's figures (facmon.selfmetrics' pseudo-device) are on the health dashboard,
    and the fixture's store outage shows on it: store down, the outbox filling."""
    board = _board(demo_site, "fm-demo-health")
    panels = {p.title: p for p in board.all_panels()}
    assert not any(p.type == "text" for p in panels.values())

    def values(title: str, ref: str = "A") -> list[float]:
        t = next(t for t in panels[title].targets if t.refId == ref)
        assert isinstance(t, InfluxQLTarget) and "'facmon'" in t.query
        rows = run(demo_influx, render(t.query, demo_influx.start, demo_influx.end))
        return [v for s in rows for row in s["values"] for v in row[1:] if v is not None]

    assert min(values("Store up")) == 0 and max(values("Store up")) == 1
    assert max(values("Outbox depth")) >= 40 * 40  # 20 minutes of samples queued
    assert 0 < min(values("Store write latency")) < 100
    assert min(values("Samples written")) >= 0 and max(values("Samples written")) > 0
    assert max(values("Unresolved alerts")) == 1
    assert {round(v, 3) for v in values("Poll success (all devices)")} >= {1.0}
