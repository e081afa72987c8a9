"""The rule kinds beyond thresholds (rate, state, night_flow), levels that are shares of a
device rating, and the shipped default rules: each stepped through time with ``now=`` on a
real ticket database (a SQLite file and the running PostgreSQL), never sleeping.

State ids (A1-A12) refer to ../shared/alerting-semantics.md; the night-flow rules are those of
../shared/domain.md, "Water leaks (minimum night flow)".
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from alerts import AlertEngine, AlertState, TicketStore
from alerts.default_rules import default_rule_use, default_rules, site_rules
from alerts.engine import AlertTransition
from config import load_config_text
from config.loader import ConfigError
from config.models import SiteConfig
from facmon.checks import CHECKS
from facmon.cli import main
from tests.alerts.test_engine import _device, r, site_config

T0 = datetime(2024, 3, 1, 2, 0, tzinfo=UTC)
F, R, N, P, OFF, X = (
    AlertState.FIRING,
    AlertState.RECOVERING,
    AlertState.NODATA,
    AlertState.PENDING,
    AlertState.INACTIVE,
    AlertState.RESOLVED,
)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def _water(id_: str, building: str = "A", poll: str = "5m") -> dict[str, Any]:
    return {
        "id": id_,
        "name": f"{id_} 水表",
        "kind": "water_meter",
        "location": {"building": building},
        "source": {"type": "modbus_tcp", "host": "127.0.0.1", "profile": "generic_water_meter"},
        "poll_interval": poll,
    }


def config(*rules: dict[str, Any], poll: str = "10s", **over: Any) -> SiteConfig:
    devices = [
        _device("ts-1", "sensor", "A", poll_interval=poll),
        _device("el-1", "elevator", "A", poll_interval=poll),
        _device("pm-1", "power_meter", "A", poll_interval=poll, ratings={"current": 200}),
        _device("pm-2", "power_meter", "B", poll_interval=poll),
        _water("wm-1"),
    ]
    return site_config(devices=devices, rules=list(rules), **over)


@pytest.fixture
def tickets(db_url: str) -> Iterator[TicketStore]:
    store = TicketStore(db_url)
    yield store
    store.close()


def feed(engine: AlertEngine, t: float, *samples: tuple[str, str, float]) -> list[AlertTransition]:
    return engine.evaluate([r(d, m, v, at(t)) for d, m, v in samples], now=at(t))


def moves(out: list[AlertTransition]) -> list[tuple[str, AlertState, AlertState, bool]]:
    return [(x.rule_id, x.before, x.after, x.notify) for x in out]


def notes(tickets: TicketStore, ticket_id: int) -> list[str]:
    detail = tickets.get_ticket(ticket_id)
    assert detail is not None
    return [e.note or "" for e in detail.events]


# -- rate ---------------------------------------------------------------------------------------
def rate_rule(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": "shaft_warming",
        "kind": "rate",
        "name": "电井温升过快",
        "metric": "temperature",
        "select": {"devices": ["ts-1"]},
        "rate_above": 5,
        "deadband": 2,  # clears at 3 per minute
        "per": "1m",
        "window": "1m",
        "fault_class": "overtemp",
    }
    base.update(over)
    return base


def test_rate_is_judged_once_half_the_window_is_covered_then_fires_holds_and_resolves(
    tickets: TicketStore,
) -> None:
    engine = AlertEngine(config(rate_rule(keep_firing_for="30s")), tickets)
    # 40 °C and rising 1 °C every 10 s (6 °C/min) from the first sample: the window must be
    # half full (30 s of samples) before there is a verdict.
    for s in (0, 10, 20):
        assert feed(engine, s, ("ts-1", "temperature", 40 + s / 10)) == []
    out = feed(engine, 30, ("ts-1", "temperature", 43))
    assert moves(out) == [("shaft_warming", OFF, F, True)]  # 3 °C in 30 s: 6/min (A1)
    for s in (40, 50, 60):  # still rising: 6/min over the trailing minute
        assert feed(engine, s, ("ts-1", "temperature", 40 + s / 10)) == []
    [alert] = tickets.unresolved_alerts()
    [ticket] = tickets.list_tickets().items
    assert (
        "temperature changing +6/1m over the last 1m (trip > 5/1m, clear <= 3/1m)"
        in (notes(tickets, ticket.id)[0])
    )
    # It levels off at 46 °C: the rate falls through the band between the levels (A4: 5 and
    # 4 per minute keep it firing) and reaches the clear level (3/min) at 90 s;
    # keep_firing_for holds it RECOVERING for 30 s more.
    steps = [(70, []), (80, []), (90, [(F, R)]), (110, []), (120, [(R, X)])]
    for s, expect in steps:
        out = feed(engine, s, ("ts-1", "temperature", 46))
        assert [(x.before, x.after) for x in out] == expect, s
    assert tickets.unresolved_alerts() == [] and alert.id == out[0].alert_id


def test_rate_for_pending_and_a_falling_rate(tickets: TicketStore) -> None:
    falling = rate_rule(rate_above=None, rate_below=-2, deadband=1, **{"for": "20s"})
    engine = AlertEngine(config(falling), tickets)
    # A cold store room losing 0.5 °C every 10 s (-3/min) from t=30 s on.
    seen = []
    for s in range(0, 130, 10):
        v = 20.0 - max(0, s - 30) * 0.05
        seen += [(s, x.before, x.after) for x in feed(engine, s, ("ts-1", "temperature", v))]
    # Over the trailing minute: -1.5/min at 60 s, -2/min at 70 s (not below -2), -2.5/min at
    # 80 s: PENDING; still tripped at 100 s, 20 s later: FIRING (A3).
    assert seen == [(80, OFF, P), (100, P, F)]


def test_rate_nodata_and_data_back_before_a_verdict_keeps_the_episode(
    tickets: TicketStore,
) -> None:
    engine = AlertEngine(config(rate_rule()), tickets)  # poll 10 s: stale after 20 s
    for s in range(0, 70, 10):
        feed(engine, s, ("ts-1", "temperature", 30 + s / 10), ("el-1", "device_up", 1))
    assert [a.state for a in engine.unresolved()] == [F]
    for s in (70, 80):  # the sensor answers, but temperature stopped coming
        feed(engine, s, ("ts-1", "device_up", 1), ("el-1", "device_up", 1))
        out = [x for x in engine.tick(at(s)) if x.rule_id == "shaft_warming"]
        assert moves(out) == ([("shaft_warming", F, N, False)] if s == 80 else [])
    # Back after more than a window: one sample is no rate, but data is back (A8): firing,
    # quietly, the same episode.
    out = feed(engine, 200, ("ts-1", "temperature", 36))
    assert moves(out) == [("shaft_warming", N, F, False)]
    assert [t.fault_class for t in tickets.list_tickets().items].count("overtemp") == 1


# -- state --------------------------------------------------------------------------------------
def state_rule(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": "lift_oos",
        "kind": "state",
        "name": "电梯停止服务",
        "metric": "service_mode",
        "select": {"kinds": ["elevator"]},
        "in": ["out_of_service"],
        "fault_class": "elevator_fault",
    }
    base.update(over)
    return base


def test_state_matches_profile_names_with_for_and_resolves_on_another_state(
    tickets: TicketStore,
) -> None:
    engine = AlertEngine(config(state_rule(**{"for": "30s"})), tickets)
    script = [
        (0, 1, []),  # normal
        (10, 7, [(OFF, P)]),  # out_of_service (code 7 in elevator_gbt24476)
        (20, 1, [(P, OFF)]),  # A2
        (30, 7, [(OFF, P)]),
        (60, 7, [(P, F)]),  # A3
        (70, 2, [(F, X)]),  # inspection: not in the set
    ]
    fired = None
    for s, v, expect in script:
        out = feed(engine, s, ("el-1", "service_mode", v))
        assert [(x.before, x.after) for x in out] == expect, s
        fired = out[0] if s == 60 else fired
    assert fired is not None and fired.ticket is not None
    assert notes(tickets, fired.ticket.id) == [
        "rule lift_oos: service_mode = out_of_service (7) (in out_of_service (7))",
        "condition cleared: service_mode = inspection (2) (in out_of_service (7))",
    ]


def test_state_not_in_with_codes_and_names_and_chattering(tickets: TicketStore) -> None:
    rule = state_rule(**{"in": None, "not_in": ["normal", 2]})  # normal or inspection are fine
    engine = AlertEngine(config(rule), tickets)
    script = [
        (0, 3, [(OFF, F, True)]),  # fire return
        (5, 1, [(F, X, True)]),
        (10, 0, [(OFF, F, True)]),  # unknown is not fine either
        (15, 2, [(F, X, True)]),
        (20, 6, [(OFF, F, True)]),
        (25, 1, [(F, R, False)]),  # third cycle within 60 s: chattering, held open (A12)
        (30, 7, [(R, F, False)]),
        (35, 1, [(F, R, False)]),
        (94, 1, []),
        (95, 1, [(R, X, True)]),
    ]
    for s, v, expect in script:
        out = feed(engine, s, ("el-1", "service_mode", v))
        assert [(x.before, x.after, x.notify) for x in out] == expect, s
    [ticket] = tickets.list_tickets().items
    assert ticket.occurrences == 3


def test_entrapment_state_is_latched_until_acknowledged(tickets: TicketStore) -> None:
    rule = state_rule(
        id="trapped", metric="entrapment", severity="critical", latched=True, **{"in": ["yes"]}
    )
    engine = AlertEngine(config(rule), tickets)
    [fired] = feed(engine, 0, ("el-1", "entrapment", 1))
    assert (fired.after, fired.severity) == (F, "critical")
    assert moves(feed(engine, 10, ("el-1", "entrapment", 0))) == [("trapped", F, R, False)]
    assert feed(engine, 600, ("el-1", "entrapment", 0)) == []  # A10: waits for a person
    out = engine.acknowledge(fired.fingerprint, "li", at(601))
    assert out is not None and (out.before, out.after) == (R, X)


# -- threshold on a share of the rating ---------------------------------------------------------
def test_threshold_levels_as_shares_of_the_device_rating(tickets: TicketStore) -> None:
    rule = {
        "id": "overload_a",
        "name": "A相过载",
        "metric": "current_a",
        "select": {"devices": ["pm-1"]},
        "above_rating": 0.9,
        "clear_rating": 0.85,
        "rating": "current",
        "fault_class": "overload",
    }
    engine = AlertEngine(config(rule), tickets)
    script = [(0, 180, []), (5, 181, [(OFF, F)]), (10, 171, []), (15, 170, [(F, X)])]
    for s, v, expect in script:
        out = feed(engine, s, ("pm-1", "current_a", v))
        assert [(x.before, x.after) for x in out] == expect, s
        if s == 5:
            assert out[0].ticket is not None
            assert notes(tickets, out[0].ticket.id) == [
                "rule overload_a: current_a = 181 (trip > 180, clear <= 170; "
                "90% of rating current 200)"
            ]


# -- night flow ---------------------------------------------------------------------------------
SHANGHAI = ZoneInfo("Asia/Shanghai")
DAY0 = date(2024, 3, 4)


def local(day: int, hour: float) -> datetime:
    t = datetime(DAY0.year, DAY0.month, DAY0.day, tzinfo=SHANGHAI) + timedelta(days=day)
    return (t + timedelta(hours=hour)).astimezone(UTC)


def leak_rule(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": "leak",
        "kind": "night_flow",
        "name": "夜间漏水",
        "select": {"kinds": ["water_meter"]},
        "severity": "minor",
        "fault_class": "water_leak",
    }
    base.update(over)
    return base


def run_nights(
    engine: AlertEngine, days: int, flow: Callable[[int, float], float | None]
) -> list[tuple[int, float, AlertState, AlertState]]:
    """Feed wm-1 every 5 minutes from local midnight of DAY0 for ``days`` days, ticking after
    each sample; ``flow(day, hour)`` None leaves the sample out (the meter still answers).
    Returns (day, local hour, before, after) of every transition."""
    seen = []
    for day in range(days):
        for k in range(288):
            hour = k / 12
            t = local(day, hour)
            v = flow(day, hour)
            batch = [r("wm-1", "device_up", 1, t)]
            if v is not None:
                batch.append(r("wm-1", "flow_rate", v, t))
            out = engine.evaluate(batch, now=t) + engine.tick(t)
            seen += [(day, hour, x.before, x.after) for x in out if x.rule_id == "leak"]
    return seen


def daytime(hour: float, base: float = 2.0) -> float:
    return base if 7 <= hour < 22 else 0.0


def test_night_flow_a_constant_leak_trips_on_the_second_night_without_zero_flow(
    tickets: TicketStore,
) -> None:
    engine = AlertEngine(config(leak_rule()), tickets)

    def flow(day: int, hour: float) -> float:
        leaking = day < 1 or (day == 1 and hour < 12)  # fixed at noon on day 1
        return daytime(hour) + (0.3 if leaking else 0.0)

    seen = run_nights(engine, 4, flow)
    # Night 0: high and never zero (one night of each run); night 1: the second night without
    # zero flow trips, decided at 06:00, the end of the later window. Night 2 is clean (one is
    # not enough, the alert keeps firing); night 3 is the second clean night: resolved.
    assert seen == [(1, 6.0, OFF, F), (3, 6.0, F, X)]
    [ticket] = [t for t in tickets.list_tickets().items if t.fault_class == "water_leak"]
    first = notes(tickets, ticket.id)[0]
    assert first.startswith("rule leak: flow_rate minimum night flow = 0.3 m3/h (02:00-04:00")
    # The ratio level: 0.1 x the previous day's mean flow, (15 h x 2.3 + 9 h x 0.3) / 24.
    assert "limit 0.155 m3/h" in first
    assert notes(tickets, ticket.id)[-1].startswith(
        "condition cleared: flow_rate minimum night flow = 0 m3/h"
    )


@pytest.mark.parametrize(("day_flow", "trips"), [(2.0, True), (5.0, False)])
def test_night_flow_three_high_nights_trip_unless_the_ratio_level_is_higher(
    tickets: TicketStore, day_flow: float, trips: bool
) -> None:
    engine = AlertEngine(config(leak_rule()), tickets)

    def flow(day: int, hour: float) -> float:
        if 5 <= hour < 5 + 1 / 12:  # one zero reading at 05:00: the no-zero run never grows
            return 0.0
        return daytime(hour, day_flow) + 0.3

    seen = run_nights(engine, 4, flow)
    # 2 m3/h by day: the limit is max(0.05, 0.1 x ~1.55) = 0.155 < 0.3, every night is high,
    # and the third one trips. 5 m3/h by day: 0.1 x ~3.4 = 0.34 > 0.3 from night 1 on.
    assert seen == ([(2, 6.0, OFF, F)] if trips else [])


def test_night_flow_a_night_without_data_never_clears_and_breaks_the_clean_run(
    tickets: TicketStore,
) -> None:
    engine = AlertEngine(config(leak_rule()), tickets)

    def flow(day: int, hour: float) -> float | None:
        if day == 3 and 1 <= hour < 5:
            return None  # flow readings missing for most of night 3 (the meter answers)
        return daytime(hour) + (0.3 if day < 2 else 0.0)

    seen = run_nights(engine, 6, flow)
    assert seen == [
        (1, 6.0, OFF, F),
        (3, 1.0 + 5 / 60, F, N),  # A8: no flow for 2 polls since 00:55
        (3, 5.0, N, F),  # data again: firing, the same episode
        # Night 2 clean, night 3 without data (the clean run starts again), nights 4 and 5
        # clean: resolved at the end of night 5, not of night 4.
        (5, 6.0, F, X),
    ]
    assert [t.fault_class for t in tickets.list_tickets().items].count("water_leak") == 1


def test_night_flow_a_silent_end_of_night_is_decided_by_the_tick(tickets: TicketStore) -> None:
    engine = AlertEngine(config(leak_rule()), tickets)
    seen: list[tuple[int, float, AlertState, AlertState]] = []
    for day in range(2):
        for k in range(72):  # every 5 minutes up to 05:55 local
            t = local(day, k / 12)
            out = engine.evaluate([r("wm-1", "flow_rate", 0.3, t)], now=t)
            seen += [(day, k / 12, x.before, x.after) for x in out if x.rule_id == "leak"]
        # Flow readings stop at 05:55 but the meter answers (volume still comes).
        for minutes in range(0, 40, 5):
            t = local(day, 6 + minutes / 60)
            engine.evaluate([r("wm-1", "volume", 100.0, t)], now=t)
            out = engine.tick(t)
            seen += [(day, 6 + minutes / 60, x.before, x.after) for x in out if x.rule_id == "leak"]
    # Each night waits one sample hold (3 polls = 15 min) past 06:00 before it is decided in
    # silence; flow stops at 05:55, so the NODATA of the leak alert comes later.
    assert seen[0] == (1, 6.25, OFF, F)
    assert (seen[1][2], seen[1][3]) == (F, N)


# -- default rules ------------------------------------------------------------------------------
def test_default_rules_load_in_both_languages_and_cover_the_device_kinds() -> None:
    zh = {r.id: r for r in default_rules("zh-CN")}
    en = {r.id: r for r in default_rules("en")}
    assert (
        zh.keys()
        == en.keys()
        >= {
            "shaft-over-temperature",
            "phase-current-high-a",
            "phase-current-over-c",
            "elevator-fault",
            "elevator-entrapment",
            "elevator-out-of-service",
            "water-night-flow-leak",
        }
    )
    assert (zh["elevator-entrapment"].name, en["elevator-entrapment"].name) == (
        "电梯困人",
        "Passenger trapped in lift",
    )
    trapped = en["elevator-entrapment"]
    assert (trapped.kind, trapped.severity, trapped.fault_class, trapped.latched) == (
        "state",
        "critical",
        "entrapment",
        True,
    )
    assert {r.kind for r in en.values()} == {"threshold", "state", "night_flow"}
    assert "communication_loss" not in en  # meter offline is the built-in alert


def test_default_rules_are_off_unless_asked_and_site_rules_replace_them_by_id() -> None:
    own = {
        "id": "elevator-fault",
        "name": "只报严重故障",
        "metric": "fault_code",
        "select": {"kinds": ["elevator"]},
        "above": 100,
        "fault_class": "elevator_fault",
    }
    assert [r.id for r in site_rules(config(own))] == ["elevator-fault"]
    cfg = config(own, default_rules=True)
    rules = site_rules(cfg)
    assert [r.id for r in rules].count("elevator-fault") == 1
    assert rules[0].name == "只报严重故障"
    uses = {u.rule.id: u for u in default_rule_use(cfg)}
    assert uses["elevator-fault"].replaced
    assert uses["elevator-entrapment"].devices == ("el-1",)
    assert uses["phase-current-over-a"].devices == ("pm-1",)  # pm-2 has no current rating
    assert uses["water-night-flow-leak"].devices == ("wm-1",)
    assert uses["shaft-over-temperature"].devices == ("ts-1",)


def test_default_rules_run_in_the_engine(tickets: TicketStore) -> None:
    own = {
        "id": "elevator-fault",
        "name": "只报严重故障",
        "metric": "fault_code",
        "select": {"kinds": ["elevator"]},
        "above": 100,
        "fault_class": "elevator_fault",
    }
    engine = AlertEngine(config(own, default_rules=True), tickets)
    out = feed(engine, 0, ("el-1", "fault_code", 12), ("el-1", "entrapment", 1))
    assert moves(out) == [("elevator-entrapment", OFF, F, True)]  # the site's fault rule: > 100
    assert out[0].severity == "critical" and out[0].ticket is not None
    assert out[0].ticket.title == "el-1 名称: 电梯困人"
    out = feed(engine, 5, ("pm-1", "current_a", 190), ("pm-2", "current_a", 5000))
    assert moves(out) == [("phase-current-high-a", OFF, P, False)]  # 90 % of 200, for 5m
    out = feed(engine, 10, ("pm-1", "current_a", 201))
    assert moves(out) == [("phase-current-over-a", OFF, P, False)]  # 100 %, for 1m
    out = feed(engine, 70, ("pm-1", "current_a", 201))
    assert moves(out) == [("phase-current-over-a", P, F, True)]
    out = feed(engine, 80, ("ts-1", "temperature", 75))
    assert moves(out) == [("shaft-over-temperature", OFF, P, False)]


def test_config_check_lists_the_default_rules_a_site_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    f = tmp_path / "site.yaml"
    f.write_text(
        """\
site: {id: s1, name: Site, language: en}
buildings:
  - {id: b1, name: B1, floor_area_m2: 100, floors: 2}
default_rules: true
devices:
  - id: el-1
    name: Lift
    kind: elevator
    location: {building: b1}
    source: {type: modbus_tcp, host: 127.0.0.1, profile: elevator_gbt24476}
  - id: el-2
    name: Lift 2
    kind: elevator
    location: {building: b1}
    source: {type: modbus_tcp, host: 127.0.0.1, profile: elevator_gbt24476, unit_id: 2}
rules:
  - {id: elevator-fault, name: Fault, metric: fault_code, above: 0, fault_class: lift}
""",
        encoding="utf-8",
    )
    assert main(["config", "check", str(f)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"{f}: OK"
    assert "  default rule elevator-entrapment (state): 2 devices" in lines
    assert "  default rule elevator-fault (threshold): replaced by the site's rule of that id" in (
        lines
    )
    assert "  default rule phase-current-over-a (threshold): 0 devices" in lines


# -- config errors ------------------------------------------------------------------------------
HEAD = """\
site: {id: s1, name: Site}
buildings:
  - {id: b1, name: B1, floor_area_m2: 100, floors: 2}
devices:
  - id: el-1
    name: Lift
    kind: elevator
    location: {building: b1}
    source: {type: modbus_tcp, host: 127.0.0.1, profile: elevator_gbt24476}
  - id: pm-1
    name: Meter
    kind: power_meter
    location: {building: b1}
    source: {type: modbus_tcp, host: 127.0.0.1, profile: generic_power_meter_3p}
    ratings: {current: 100}
  - id: pm-2
    name: Meter 2
    kind: power_meter
    location: {building: b1}
    source: {type: modbus_tcp, host: 127.0.0.1, profile: generic_power_meter_3p, port: 503}
rules:
"""


@pytest.mark.parametrize(
    ("rule", "problem"),
    [
        (
            "{id: r1, name: R, kind: rte, metric: m, fault_class: f}",
            "site.yaml:22 rules[0].kind: unknown value kind 'rte' (did you mean 'rate'?)",
        ),
        (
            "{id: r1, name: R, kind: rate, metric: m, fault_class: f}",
            "site.yaml:22 rules[0]: give exactly one of 'rate_above' or 'rate_below'",
        ),
        (
            "{id: r1, name: R, kind: state, metric: entrapment, in: [yes], fault_class: f}",
            "site.yaml:22 rules[0].in: write state names in quotes, e.g. ['yes'] (YAML reads "
            "unquoted yes/no/on/off as true/false)",
        ),
        (
            "{id: r1, name: R, kind: state, metric: service_mode, in: [7, out_of_servce], "
            "fault_class: f, select: {kinds: [elevator]}}",
            "site.yaml:22 rules[0].in[1]: device 'el-1' has no state 'out_of_servce' of "
            "service_mode (unknown, normal, inspection, fire_return, firefighter, "
            "emergency_power, earthquake, out_of_service)",
        ),
        (
            "{id: r1, name: R, kind: state, metric: floor, in: [top], fault_class: f, "
            "select: {devices: [el-1]}}",
            "site.yaml:22 rules[0].in[0]: device 'el-1' has no named states of floor (no enum "
            "in its profile): give the state's code, e.g. 7",
        ),
        (
            "{id: r1, name: R, metric: current_b, above_rating: 0.9, rating: current, "
            "fault_class: f, select: {kinds: [power_meter]}}",
            "site.yaml:22 rules[0].above_rating: selected device(s) pm-2 have no rating "
            "'current' (add ratings: {current: ...} to the device, or narrow 'select')",
        ),
        (
            "{id: r1, name: R, metric: current_b, above_rating: 0.9, clear: 80, fault_class: f}",
            "site.yaml:22 rules[0]: with a *_rating level give the clear level as 'clear_rating'",
        ),
        (
            "{id: r1, name: R, kind: night_flow, for: 5m, fault_class: f}",
            "site.yaml:22 rules[0].for: a night_flow rule counts nights: use 'leak_nights', "
            "not 'for'",
        ),
        (
            "{id: r1, name: R, kind: night_flow, night: '04:00-02:00', fault_class: f}",
            "site.yaml:22 rules[0].night: '04:00-02:00' ends before it starts; split a span "
            "across midnight in two",
        ),
    ],
)
def test_rule_config_errors_name_file_line_and_field(rule: str, problem: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config_text(HEAD + f"  - {rule}\n", filename="site.yaml", env={}, checks=CHECKS)
    assert [str(p) for p in info.value.problems] == [problem]


def test_rules_without_kind_are_threshold_rules_and_every_kind_loads() -> None:
    text = HEAD + (
        "  - {id: a, name: A, metric: fault_code, above: 0, fault_class: f}\n"
        "  - {id: b, name: B, kind: rate, metric: t, rate_above: 2, per: 1h, fault_class: f}\n"
        "  - {id: c, name: C, kind: state, metric: service_mode, not_in: [normal], "
        "fault_class: f, select: {kinds: [elevator]}}\n"
        "  - {id: d, name: D, kind: night_flow, night: '01:00-03:00', fault_class: f}\n"
    )
    cfg = load_config_text(text, filename="site.yaml", env={}, checks=CHECKS)
    assert [r.kind for r in cfg.rules] == ["threshold", "rate", "state", "night_flow"]
    assert cfg.default_rules is False
