"""The site's dashboards, generated from its config.

Five dashboards per site, each with a stable uid (``dashboards.links``):

* **overview**: a row per building of the config: power now and over time (main meters:
  meters without a ``parent``), energy today, water today, devices down, and the site's rules
  that trip now;
* **electrical**: phase currents, the same as a share of each meter's rated current
  (``ratings: {current: ...}``, with the rated-current rules' levels as thresholds), voltage,
  power factor, active power, energy per day and temperatures (shaft, room and outdoor
  sensors: every ``*temperature*`` metric of the site's sensors);
* **elevators**: service mode and fault timelines, trips per hour, entrapments, fault onsets
  and availability;
* **water**: flow, lowest hourly flow per day (the night minimum) against the leak threshold
  of ``reports.water``, and use per day;
* **health**: facmon's own view of its devices: up/down, poll success, poll latency,
  consecutive failures and data age; and of itself: store up, outbox depths, store write
  latency, samples written and dropped, devices up/down and unresolved alerts.

The detail dashboards have template variables ``building``, ``floor`` and ``device`` (InfluxQL
``SHOW TAG VALUES``, each narrowed by the ones before it). Every threshold rule of the config
is an annotation on the dashboards of the kinds it selects: the times its metric was past the
trip level. That is the rule's condition on the stored data; the alert engine's hold timers,
hysteresis and acknowledgements live in the ticket database, which Grafana does not read.

Open tickets are not a series (they live in the ticket database): the overview counts the
rules tripping now and links to the console's ticket list when ``api.public_url`` is set.
facmon's own figures (store up, outbox depth, write latency, samples written, unresolved
alerts) are stored by the running process as readings of a pseudo-device
(``storage.self_metrics``, facmon.selfmetrics); the health dashboard charts them.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from alerts.default_rules import applies, site_rules
from collector.profile import load_profile
from config.models import Device, DeviceKind, SiteConfig, ThresholdRule
from dashboards import influxql as q
from dashboards.links import DEVICE_PANELS, dashboard_uid, datasource_uid
from dashboards.model import (
    EXPRESSION,
    GRID_COLUMNS,
    INFLUXDB,
    Annotation,
    Annotations,
    AnnotationTarget,
    Dashboard,
    DashboardLink,
    DataSourceRef,
    FieldConfig,
    FieldDefaults,
    GridPos,
    InfluxQLTarget,
    Link,
    MappingResult,
    MathExpression,
    Panel,
    PanelType,
    QueryVariable,
    RangeMapping,
    RangeOptions,
    RowPanel,
    Target,
    Templating,
    Threshold,
    Thresholds,
    TimeRange,
    ValueMapping,
)
from store.influx import quote_literal

ROLES = ("overview", "electrical", "elevators", "water", "health")
TAG = "facmon"
ALL = ".*"  # the All value: Grafana inserts it verbatim, and /^.*$/ also matches no floor tag
_SEVERITY_COLORS = {
    "critical": "red",
    "major": "orange",
    "minor": "yellow",
    "warning": "yellow",
    "info": "blue",
}
_ELECTRICAL_KINDS: tuple[DeviceKind, ...] = ("power_meter", "sensor")


def generate(config: SiteConfig) -> list[Dashboard]:
    """Every dashboard of the site, overview first."""
    ds = DataSourceRef(type=INFLUXDB, uid=datasource_uid(config))
    return [
        _overview(config, ds),
        _electrical(config, ds),
        _elevators(config, ds),
        _water(config, ds),
        _health(config, ds),
    ]


# -- building blocks ------------------------------------------------------------------------
@dataclass
class _Board:
    """Panels in reading order; places them left to right on Grafana's 24-column grid."""

    ds: DataSourceRef
    panels: list[Panel | RowPanel] = field(default_factory=list)
    ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    x: int = 0
    y: int = 0
    line_h: int = 0

    def next_id(self) -> int:
        return next(self.ids)

    def row(self, title: str) -> None:
        self._newline()
        self.panels.append(
            RowPanel(id=self.next_id(), title=title, gridPos=GridPos(h=1, w=24, x=0, y=self.y))
        )
        self.y += 1

    def _newline(self) -> None:
        if self.x:
            self.y += self.line_h
            self.x, self.line_h = 0, 0

    def panel(
        self,
        type_: PanelType,
        title: str,
        targets: Sequence[Target],
        *,
        w: int = 12,
        h: int = 8,
        description: str | None = None,
        defaults: FieldDefaults | None = None,
        options: Mapping[str, object] | None = None,
        interval: str | None = None,
        time_from: str | None = None,
        links: Sequence[Link] = (),
        panel_id: int | None = None,
    ) -> Panel:
        if self.x + w > GRID_COLUMNS:
            self._newline()
        p = Panel(
            id=panel_id if panel_id is not None else self.next_id(),
            type=type_,
            title=title,
            description=description,
            gridPos=GridPos(h=h, w=w, x=self.x, y=self.y),
            datasource=self.ds if targets else None,
            targets=list(targets),
            fieldConfig=FieldConfig(defaults=defaults or FieldDefaults()),
            options=dict(options or {}),
            interval=interval,
            timeFrom=time_from,
            links=list(links),
        )
        self.panels.append(p)
        self.x += w
        self.line_h = max(self.line_h, h)
        return p

    def chart(
        self,
        title: str,
        targets: Sequence[Target],
        *,
        defaults: FieldDefaults,
        w: int = 12,
        description: str | None = None,
        interval: str | None = None,
        panel_id: int | None = None,
    ) -> Panel:
        """A time series panel with the legend below it."""
        return self.panel(
            "timeseries",
            title,
            targets,
            w=w,
            description=description,
            defaults=defaults,
            options=_LEGEND,
            interval=interval,
            panel_id=panel_id,
        )

    def per_device(
        self, fn: str, metric: str, conditions: Sequence[str], *, fill: str = "null"
    ) -> InfluxQLTarget:
        """``fn`` of ``metric`` per interval, a series per device."""
        return self.target(
            q.series_by_interval(fn, metric, conditions, fill=fill), alias="$tag_device"
        )

    def target(
        self, query: str, *, ref: str = "A", alias: str | None = None, hide: bool | None = None
    ) -> InfluxQLTarget:
        return InfluxQLTarget(refId=ref, datasource=self.ds, query=query, alias=alias, hide=hide)


def _dashboard(
    config: SiteConfig,
    role: str,
    title: str,
    board: _Board,
    *,
    variables: Sequence[QueryVariable] = (),
    annotations: Sequence[Annotation] = (),
    description: str,
) -> Dashboard:
    links = [
        DashboardLink(
            title=f"{config.site.name}: facmon",
            type="dashboards",
            tags=[TAG, _site_tag(config)],
            asDropdown=True,
            includeVars=True,
            keepTime=True,
            icon="dashboard",
        )
    ]
    if config.api.public_url:
        links.append(
            DashboardLink(
                title="Tickets (facmon console)",
                type="link",
                url=f"{config.api.public_url.rstrip('/')}/console",
                targetBlank=True,
                tooltip="Open tickets and their work, in facmon's console",
            )
        )
    return Dashboard(
        uid=dashboard_uid(config, role),
        title=f"{config.site.name} · {title}",
        description=description,
        tags=[TAG, _site_tag(config), role],
        timezone=config.site.timezone,
        time=TimeRange(**{"from": "now-24h", "to": "now"}),
        templating=Templating(list=list(variables)),
        annotations=Annotations(list=list(annotations)),
        links=links,
        panels=board.panels,
    )


def _site_tag(config: SiteConfig) -> str:
    return f"site:{config.site.id}"


def _site(config: SiteConfig) -> str:
    return q.eq("site", config.site.id)


def _kinds(kinds: Sequence[DeviceKind]) -> str:
    return q.any_of("kind", kinds)


def _variables(
    config: SiteConfig, ds: DataSourceRef, kinds: Sequence[DeviceKind]
) -> list[QueryVariable]:
    """building -> floor -> device, each narrowed by the ones before it and by ``kinds``."""
    site, kind = _site(config), _kinds(kinds)

    def var(name: str, label: str, conditions: Sequence[str]) -> QueryVariable:
        text = q.tag_values(name, conditions)
        return QueryVariable(
            name=name,
            label=label,
            datasource=ds,
            query=text,
            definition=text,
            refresh=1,
            multi=True,
            includeAll=True,
            allValue=ALL,
        )

    return [
        var("building", "Building", [site, kind]),
        var("floor", "Floor", [site, kind, q.matches_variable("building", "building")]),
        var(
            "device",
            "Device",
            [
                site,
                kind,
                q.matches_variable("building", "building"),
                q.matches_variable("floor", "floor"),
            ],
        ),
    ]


def _chosen(config: SiteConfig, kinds: Sequence[DeviceKind]) -> list[str]:
    """Conditions of a detail dashboard's queries: the site, the kinds and the variables."""
    return [
        _site(config),
        _kinds(kinds),
        q.matches_variable("building", "building"),
        q.matches_variable("floor", "floor"),
        q.matches_variable("device", "device"),
    ]


def _devices(config: SiteConfig, kinds: Sequence[DeviceKind]) -> list[Device]:
    return [d for d in config.devices if d.kind in kinds]


def _mains(config: SiteConfig, building: str, kind: DeviceKind) -> list[str]:
    """Meters of ``kind`` in ``building`` without a parent: the ones a building total sums."""
    return [
        d.id
        for d in config.devices
        if d.kind == kind and d.location.building == building and d.parent is None
    ]


def _threshold_rules(config: SiteConfig) -> list[ThresholdRule]:
    """The threshold rules the site runs: its own and, with ``default_rules``, the shipped
    defaults it does not replace. Rate, state and night-flow rules are not a level on one
    sample, so they have no InfluxQL counterpart here."""
    return [r for r in site_rules(config) if isinstance(r, ThresholdRule)]


def _rule_levels(rule: ThresholdRule, devices: Sequence[Device]) -> dict[str, float]:
    """Trip level per device the rule watches (a rated rule's differs per device)."""
    return {d.id: rule.levels(d.ratings)[0] for d in devices if applies(rule, d)}


def _rule_annotations(
    config: SiteConfig,
    ds: DataSourceRef,
    kinds: Sequence[DeviceKind],
    with_variables: bool,
) -> list[Annotation]:
    """One annotation per threshold rule that selects a device of ``kinds``: the intervals
    in which the rule's metric was past its trip level."""
    out: list[Annotation] = []
    devices = _devices(config, kinds)
    for rule in _threshold_rules(config):
        levels = _rule_levels(rule, devices)
        if not levels:
            continue
        conditions = [_site(config), q.any_of("device", levels)]
        if with_variables:
            conditions += [
                q.matches_variable("building", "building"),
                q.matches_variable("device", "device"),
            ]
        worst = "max" if rule.high else "min"
        inner = q.series_by_interval(worst, rule.metric, conditions, fill="none")
        text = f'SELECT "{worst}" AS "value", "device" FROM ({inner})' + q.where(
            q.over_levels(worst, levels, rule.high)
        )
        out.append(
            Annotation(
                name=rule.name,
                datasource=ds,
                iconColor=_SEVERITY_COLORS.get(rule.severity, "red"),
                target=AnnotationTarget(query=text, textColumn="device", tagsColumn="device"),
            )
        )
    return out


def _state_mappings(device: Device | None, metric: str) -> list[ValueMapping]:
    """Names of a state register's codes from the device's profile (none if unreadable)."""
    if device is None or device.source.type == "mqtt":
        return []
    try:
        profile = load_profile(device.source.profile)
    except (OSError, ValueError):
        return []
    for reg in profile.registers:
        if reg.metric == metric and reg.enum:
            return [
                ValueMapping(
                    options={
                        str(code): MappingResult(text=name, index=i)
                        for i, (code, name) in enumerate(sorted(reg.enum.items()))
                    }
                )
            ]
    return []


def _steps(*pairs: tuple[str, float | None]) -> Thresholds:
    return Thresholds(steps=[Threshold(color=c, value=v) for c, v in pairs])


_TS = {"drawStyle": "line", "lineWidth": 1, "fillOpacity": 0, "spanNulls": True}
_BARS = {"drawStyle": "bars", "fillOpacity": 60, "lineWidth": 1}
_LEGEND = {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True}}
_TIMELINE = {"showValue": "never", "mergeValues": True, "rowHeight": 0.8}


def _up_down() -> FieldDefaults:
    """A 0/1 series as red "down" and green "up"."""
    return FieldDefaults(
        mappings=[
            ValueMapping(
                options={
                    "0": MappingResult(text="down", color="red"),
                    "1": MappingResult(text="up", color="green"),
                }
            )
        ],
        color={"mode": "thresholds"},
        thresholds=_steps(("red", None), ("green", 1)),
    )


def _total_today(metric: str, conditions: Sequence[str]) -> str:
    """The growth of the ``metric`` counters of the devices ``conditions`` select over the
    time range (the panel's: today), summed."""
    return (
        f'SELECT sum("spread") FROM (SELECT spread("value") FROM "{metric}"'
        + q.where(*conditions, q.GOOD_ENOUGH, q.TIME_FILTER)
        + ' GROUP BY "device")'
    )


# -- overview -------------------------------------------------------------------------------
def _overview(config: SiteConfig, ds: DataSourceRef) -> Dashboard:
    b = _Board(ds)
    site = _site(config)
    tz = config.site.timezone
    console = (
        [Link(title="Tickets in the console", url=f"{config.api.public_url.rstrip('/')}/console")]
        if config.api.public_url
        else []
    )
    for building in config.buildings:
        here = q.eq("building", building.id)
        devices = [d for d in config.devices if d.location.building == building.id]
        if not devices:
            continue
        b.row(building.name)
        power_mains = _mains(config, building.id, "power_meter")
        water_mains = _mains(config, building.id, "water_meter")
        if power_mains:
            mains = q.any_of("device", power_mains)
            b.panel(
                "stat",
                "Power now",
                [
                    b.target(
                        'SELECT sum("last") FROM ('
                        + q.last_per_device("active_power", [site, here, mains])
                        + ")"
                    )
                ],
                w=4,
                h=5,
                description="Sum of the latest active power of the building's main meters "
                "(meters without a parent).",
                defaults=FieldDefaults(unit="kwatt", decimals=1),
            )
            b.panel(
                "stat",
                "Energy today",
                [b.target(_total_today("energy_import", [site, here, mains]))],
                w=4,
                h=5,
                description=f"Import of the main meters since local midnight ({tz}).",
                defaults=FieldDefaults(unit="kwatth", decimals=0),
                time_from="now/d",
            )
        if water_mains:
            b.panel(
                "stat",
                "Water today",
                [b.target(_total_today("volume", [site, here, q.any_of("device", water_mains)]))],
                w=4,
                h=5,
                description=f"Use of the main water meters since local midnight ({tz}).",
                defaults=FieldDefaults(unit="m3", decimals=1),
                time_from="now/d",
            )
        b.panel(
            "stat",
            "Devices down",
            [
                b.target(
                    'SELECT count("last") - sum("last") FROM ('
                    + q.last_per_device("device_up", [site, here])
                    + ")"
                )
            ],
            w=4,
            h=5,
            description="Devices whose latest poll failed (device_up = 0). A device that has "
            "never answered in the time range is not counted: see the health dashboard.",
            defaults=FieldDefaults(
                decimals=0, noValue="0", thresholds=_steps(("green", None), ("red", 1))
            ),
            links=[Link(title="facmon health", url=f"/d/{dashboard_uid(config, 'health')}")],
        )
        tripping = _tripping_targets(b, config, building.id, devices)
        if tripping:
            b.panel(
                "stat",
                "Rules tripping now",
                tripping,
                w=8,
                h=5,
                description="Per alert rule, the devices whose latest value is past the rule's "
                "trip level. The alert engine also applies hold times, hysteresis and "
                "acknowledgement: its tickets are in the facmon console.",
                defaults=FieldDefaults(
                    decimals=0, noValue="0", thresholds=_steps(("green", None), ("red", 1))
                ),
                options={"textMode": "value_and_name", "colorMode": "background"},
                links=console,
            )
        if power_mains:
            b.chart(
                "Power",
                [
                    b.per_device(
                        "mean", "active_power", [site, here, q.any_of("device", power_mains)]
                    )
                ],
                w=24,
                description="Active power of the main meters, stacked: the building's demand.",
                defaults=FieldDefaults(
                    unit="kwatt",
                    custom={**_TS, "fillOpacity": 25, "stacking": {"mode": "normal"}},
                ),
            )
    return _dashboard(
        config,
        "overview",
        "Overview",
        b,
        annotations=_rule_annotations(
            config, ds, ("power_meter", "elevator", "water_meter", "sensor"), False
        ),
        description="Per building: power, energy and water today, devices down and the rules "
        "tripping now. Generated by 'facmon grafana export' from the site config.",
    )


def _tripping_targets(
    b: _Board, config: SiteConfig, building: str, devices: Sequence[Device]
) -> list[Target]:
    out: list[Target] = []
    refs = _refs()
    for rule in _threshold_rules(config):
        levels = _rule_levels(rule, devices)
        if not levels:
            continue
        inner = q.last_per_device(
            rule.metric, [_site(config), q.eq("building", building), q.any_of("device", levels)]
        )
        out.append(
            b.target(
                f'SELECT count("last") FROM ({inner})'
                + q.where(q.over_levels("last", levels, rule.high)),
                ref=next(refs),
                alias=rule.name,
            )
        )
    return out


def _refs() -> Iterator[str]:
    letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    return iter([*letters, *(a + b for a in letters for b in letters)])


# -- electrical -----------------------------------------------------------------------------
def _electrical(config: SiteConfig, ds: DataSourceRef) -> Dashboard:
    b = _Board(ds, ids=itertools.count(10))
    meters = _chosen(config, ("power_meter",))
    sensors = _chosen(config, ("sensor",))
    b.row("Currents")
    b.chart(
        "Phase currents",
        [
            b.target(
                q.series_by_interval("mean", "/^current_[abc]$/", meters),
                alias="$tag_device $m",
            )
        ],
        description="Mean current of each phase per interval.",
        defaults=FieldDefaults(unit="amp", custom=_TS),
        panel_id=DEVICE_PANELS["power_meter"][1],
    )
    rated = {
        d.id: d.ratings["current"]
        for d in _devices(config, ("power_meter",))
        if "current" in d.ratings
    }
    if rated:
        shares = sorted(
            {
                100.0 * (r.above_rating or 0.0)
                for r in _threshold_rules(config)
                if r.above_rating is not None
                and r.rating_key == "current"
                and r.metric.startswith("current")
            }
        )
        steps = [("green", None), *(("orange", s) for s in shares[:1]), ("red", 100.0)]
        refs = _refs()
        b.chart(
            "Phase currents, % of rating",
            [
                b.target(
                    q.series_by_interval(
                        "max",
                        "/^current_[abc]$/",
                        [*meters, q.eq("device", dev)],
                        scale=f" * 100 / {rating!r}",
                    ),
                    ref=next(refs),
                    alias="$tag_device $m",
                )
                for dev, rating in sorted(rated.items())
            ],
            description="Highest current of each phase per interval as a share of the meter's "
            "rated current (ratings.current in the site config); the lines mark the "
            "rated-current alert rules and 100 %.",
            defaults=FieldDefaults(
                unit="percent",
                min=0,
                thresholds=_steps(*steps),
                custom={**_TS, "thresholdsStyle": {"mode": "line+area"}},
            ),
        )
    b.row("Voltage and power")
    b.chart(
        "Voltage",
        [
            b.target(
                q.series_by_interval("mean", "/^voltage_[abc]$/", meters), alias="$tag_device $m"
            )
        ],
        defaults=FieldDefaults(unit="volt", custom=_TS),
    )
    b.chart(
        "Power factor",
        [b.per_device("mean", "power_factor", meters)],
        defaults=FieldDefaults(unit="none", min=-1, max=1, decimals=2, custom=_TS),
    )
    b.chart(
        "Active power",
        [b.per_device("mean", "active_power", meters)],
        defaults=FieldDefaults(unit="kwatt", custom=_TS),
    )
    b.chart(
        "Energy per day",
        [
            b.target(
                q.counter_per_day("energy_import", meters, config.site.timezone),
                alias="$tag_device",
            )
        ],
        description=f"Import per local day ({config.site.timezone}): the growth of the "
        "energy counter between the ends of consecutive days.",
        defaults=FieldDefaults(unit="kwatth", custom=_BARS),
    )
    if _devices(config, ("sensor",)):
        b.row("Temperatures")
        b.chart(
            "Temperatures (shafts, rooms, outdoor)",
            [
                b.target(
                    q.series_by_interval("mean", "/temperature/", sensors),
                    alias="$tag_device $m",
                )
            ],
            w=24,
            description="Every temperature metric of the site's sensors: electrical shafts, "
            "switch rooms and the outdoor air.",
            defaults=FieldDefaults(unit="celsius", custom=_TS),
            panel_id=DEVICE_PANELS["sensor"][1],
        )
    return _dashboard(
        config,
        "electrical",
        "Electrical",
        b,
        variables=_variables(config, ds, _ELECTRICAL_KINDS),
        annotations=_rule_annotations(config, ds, _ELECTRICAL_KINDS, True),
        description="Power meters and temperature sensors: phase currents against their "
        "rating, voltage, power factor, power, energy per day and temperatures.",
    )


# -- elevators ------------------------------------------------------------------------------
def _elevators(config: SiteConfig, ds: DataSourceRef) -> Dashboard:
    b = _Board(ds, ids=itertools.count(10))
    lifts = _chosen(config, ("elevator",))
    first = next(iter(_devices(config, ("elevator",))), None)
    b.row("State")
    b.panel(
        "state-timeline",
        "Service mode",
        [b.per_device("last", "service_mode", lifts, fill="previous")],
        w=24,
        description="GB/T 24476 service mode per lift: normal, inspection, fire return, "
        "out of service ...",
        defaults=FieldDefaults(
            mappings=list(_state_mappings(first, "service_mode")),
            thresholds=_steps(("red", None), ("green", 1), ("orange", 2), ("red", 7)),
            color={"mode": "thresholds"},
        ),
        options=_TIMELINE,
        panel_id=DEVICE_PANELS["elevator"][1],
    )
    b.panel(
        "state-timeline",
        "Faults and entrapments",
        [
            b.target(
                q.series_by_interval("max", "fault_code", lifts, fill="previous"),
                ref="A",
                alias="$tag_device fault",
            ),
            b.target(
                q.series_by_interval("max", "entrapment", lifts, fill="previous"),
                ref="B",
                alias="$tag_device entrapment",
            ),
        ],
        w=24,
        description="Fault code (0: none) and passenger entrapment per lift.",
        defaults=FieldDefaults(
            mappings=[
                ValueMapping(options={"0": MappingResult(text="ok", color="green")}),
                RangeMapping(
                    options=RangeOptions(
                        **{"from": 1, "to": 254},
                        result=MappingResult(color="red"),
                    )
                ),
            ],
            thresholds=_steps(("green", None), ("red", 1)),
            color={"mode": "thresholds"},
        ),
        options={"showValue": "auto", "mergeValues": True, "rowHeight": 0.8},
    )
    b.row("Use and availability")
    b.chart(
        "Trips per hour",
        [
            b.target(
                'SELECT non_negative_difference(last("value")) FROM "run_count"'
                + q.where(*lifts, q.GOOD_ENOUGH, q.TIME_FILTER)
                + ' GROUP BY time(1h), "device" fill(none)',
                alias="$tag_device",
            )
        ],
        description="Runs started per hour, from the run counter.",
        defaults=FieldDefaults(unit="short", decimals=0, custom=_BARS),
    )
    b.panel(
        "stat",
        "Fault onsets",
        [
            b.target(
                'SELECT count("difference") FROM (SELECT difference("value") FROM "fault_code"'
                + q.where(*lifts, q.GOOD_ENOUGH, q.TIME_FILTER)
                + ' GROUP BY "device") WHERE "difference" > 0 GROUP BY "device"',
                alias="$tag_device",
            )
        ],
        w=6,
        description="Times a lift's fault code rose (a new fault) in the time range.",
        defaults=FieldDefaults(decimals=0, noValue="0"),
        options={"textMode": "value_and_name"},
    )
    b.panel(
        "bargauge",
        "Availability",
        [
            b.target(
                'SELECT count("value") FROM "service_mode"'
                + q.where(*lifts, '"value" = 1', q.GOOD_ENOUGH, q.TIME_FILTER)
                + ' GROUP BY "device"',
                ref="A",
                alias="$tag_device",
                hide=True,
            ),
            b.target(
                'SELECT count("value") FROM "service_mode"'
                + q.where(*lifts, q.GOOD_ENOUGH, q.TIME_FILTER)
                + ' GROUP BY "device"',
                ref="B",
                alias="$tag_device",
                hide=True,
            ),
            MathExpression(
                refId="C",
                datasource=DataSourceRef(type=EXPRESSION, uid=EXPRESSION),
                expression="$A / $B * 100",
            ),
        ],
        w=6,
        description="Share of the samples in normal service (mode 1). The uptime report "
        "weighs time and planned maintenance; this is the quick look.",
        defaults=FieldDefaults(
            unit="percent",
            min=0,
            max=100,
            decimals=1,
            thresholds=_steps(("red", None), ("orange", 95), ("green", 98)),
        ),
    )
    return _dashboard(
        config,
        "elevators",
        "Elevators",
        b,
        variables=_variables(config, ds, ("elevator",)),
        annotations=_rule_annotations(config, ds, ("elevator",), True),
        description="Lifts: service mode, faults and entrapments, trips and availability.",
    )


# -- water ----------------------------------------------------------------------------------
def _water(config: SiteConfig, ds: DataSourceRef) -> Dashboard:
    b = _Board(ds, ids=itertools.count(10))
    meters = _chosen(config, ("water_meter",))
    w = config.reports.water
    tz = config.site.timezone
    b.row("Flow")
    b.chart(
        "Flow",
        [b.per_device("mean", w.flow_metric, meters)],
        w=24,
        defaults=FieldDefaults(unit="m3/h", custom=_TS),
        panel_id=DEVICE_PANELS["water_meter"][1],
    )
    b.row("Leaks")
    hourly = q.series_by_interval("mean", w.flow_metric, meters, every="1h", fill="none", tz=tz)
    b.chart(
        "Night minimum (lowest hourly flow per day)",
        [
            b.target(
                f'SELECT min("mean") FROM ({hourly})'
                + q.where(q.TIME_FILTER)
                + f' GROUP BY time(1d), "device" fill(none) tz({quote_literal(tz)})',
                alias="$tag_device",
            )
        ],
        description=f"The lowest hourly mean flow of each local day: a building's use is "
        f"lowest at night, so this is its minimum night flow. Above the leak threshold "
        f"({w.threshold_m3h} m3/h, reports.water.threshold_m3h) night after night means a leak; "
        "the water report dates the episodes and estimates the loss.",
        defaults=FieldDefaults(
            unit="m3/h",
            min=0,
            thresholds=_steps(("green", None), ("red", w.threshold_m3h)),
            custom={**_BARS, "thresholdsStyle": {"mode": "line"}},
        ),
    )
    b.chart(
        "Water use per day",
        [b.target(q.counter_per_day(w.metric, meters, tz), alias="$tag_device")],
        description=f"Volume per local day ({tz}) from the meter's counter.",
        defaults=FieldDefaults(unit="m3", custom=_BARS),
    )
    leak_nights = Annotation(
        name="Night flow above the leak threshold",
        datasource=ds,
        iconColor="purple",
        target=AnnotationTarget(
            query=f'SELECT "min" AS "value", "device" FROM (SELECT min("mean") FROM ({hourly})'
            + q.where(q.TIME_FILTER)
            + f' GROUP BY time(1d), "device" fill(none) tz({quote_literal(tz)}))'
            + q.where(f'"min" > {w.threshold_m3h!r}'),
            textColumn="device",
            tagsColumn="device",
        ),
    )
    return _dashboard(
        config,
        "water",
        "Water",
        b,
        variables=_variables(config, ds, ("water_meter",)),
        annotations=[*_rule_annotations(config, ds, ("water_meter",), True), leak_nights],
        description="Water meters: flow, the night minimum against the leak threshold, and "
        "use per day.",
    )


# -- facmon health --------------------------------------------------------------------------
def _health(config: SiteConfig, ds: DataSourceRef) -> Dashboard:
    b = _Board(ds)
    kinds: tuple[DeviceKind, ...] = ("power_meter", "elevator", "water_meter", "sensor")
    every = _chosen(config, kinds)
    b.row("Polling")
    b.panel(
        "state-timeline",
        "Device up",
        [b.per_device("min", "device_up", every, fill="null")],
        w=24,
        description="Whether each poll of a device succeeded (its worst poll per interval).",
        defaults=_up_down(),
        options=_TIMELINE,
    )
    b.panel(
        "bargauge",
        "Poll success",
        [
            b.target(
                'SELECT mean("value") * 100 FROM "device_up"'
                + q.where(*every, q.TIME_FILTER)
                + ' GROUP BY "device"',
                alias="$tag_device",
            )
        ],
        w=8,
        description="Share of the polls in the time range that succeeded, per device.",
        defaults=FieldDefaults(
            unit="percent",
            min=0,
            max=100,
            decimals=1,
            thresholds=_steps(("red", None), ("orange", 95), ("green", 99)),
        ),
        options={"orientation": "horizontal", "displayMode": "basic"},
    )
    b.chart(
        "Poll latency",
        [b.per_device("max", "poll_latency", every)],
        w=16,
        description="Slowest successful poll per interval (all requests of one poll).",
        defaults=FieldDefaults(unit="s", custom=_TS),
    )
    b.chart(
        "Consecutive failures",
        [b.per_device("max", "consecutive_failures", every)],
        description="Failed polls in a row: 0 while a device answers.",
        defaults=FieldDefaults(unit="short", decimals=0, custom=_TS),
    )
    b.chart(
        "Data age",
        [b.per_device("max", "last_ok_age", every)],
        description="Seconds since each device's last good poll: how stale its figures are.",
        defaults=FieldDefaults(unit="s", custom=_TS),
    )
    _process_panels(b, config)
    return _dashboard(
        config,
        "health",
        "facmon health",
        b,
        variables=_variables(config, ds, kinds),
        description="facmon's polling as it stored it: device up/down, poll success, "
        "latency, failures and data age; and the process itself: store up, outbox depth, "
        "write latency, samples written, alerts.",
    )


def _process_panels(b: _Board, config: SiteConfig) -> None:
    """facmon's own figures, stored every ``storage.self_metrics.interval`` as readings of the
    pseudo-device ``storage.self_metrics.device`` (facmon.selfmetrics). Not narrowed by the
    dashboard's variables: they are about the process, not a building or device."""
    own = [_site(config), q.eq("device", config.storage.self_metrics.device)]
    every = f"{max(int(config.storage.self_metrics.interval.total_seconds()), 1)}s"

    def series(fn: str, metric: str, ref: str = "A", alias: str | None = None) -> Target:
        return b.target(q.series_by_interval(fn, metric, own, by=()), ref=ref, alias=alias)

    def per_minute(counter: str, ref: str, alias: str) -> Target:
        return b.target(
            f'SELECT non_negative_derivative(max("value"), 1m) FROM "{counter}"'
            + q.where(*own, q.GOOD_ENOUGH, q.TIME_FILTER)
            + f" GROUP BY time({q.INTERVAL}) fill(none)",
            ref=ref,
            alias=alias,
        )

    def chart(
        title: str, targets: Sequence[Target], *, description: str, defaults: FieldDefaults
    ) -> None:
        b.chart(title, targets, description=description, defaults=defaults, interval=every)

    b.row("facmon process")
    b.panel(
        "state-timeline",
        "Store up",
        [series("min", "store_up", alias="store")],
        w=24,
        h=4,
        description="Whether the store accepted writes when facmon sampled itself. Samples "
        "taken during an outage wait in the outbox and are written when the store is back, so "
        "an outage shows here afterwards.",
        defaults=_up_down(),
        options=_TIMELINE,
        interval=every,
    )
    chart(
        "Outbox depth",
        [
            series("max", "outbox_depth", "A", "readings outbox"),
            series("max", "paging_outbox_depth", "B", "paging outbox"),
        ],
        description="Samples waiting in the durable outbox for the store, and messages "
        "waiting to be paged. Growing for long: the store (or a paging channel) is slower than "
        "what comes in, or down.",
        defaults=FieldDefaults(unit="short", decimals=0, custom=_TS),
    )
    chart(
        "Store write latency",
        [series("max", "store_write_latency_ms", alias="mean per batch")],
        description="Mean time of a store write (one outbox batch) over each sampling "
        "interval; the worst interval per graph point.",
        defaults=FieldDefaults(unit="ms", custom=_TS),
    )
    chart(
        "Samples written",
        [
            per_minute("samples_written", "A", "written"),
            per_minute("samples_dropped", "B", "dropped"),
        ],
        description="Samples the store accepted, and samples dropped (outbox full or refused "
        "by the store), per minute. The counters restart with the process; a restart is not "
        "counted as a drop.",
        defaults=FieldDefaults(unit="short", custom=_TS),
    )
    chart(
        "Devices up and down",
        [
            series("last", "devices_up", "A", "up"),
            series("last", "devices_down", "B", "down"),
        ],
        description="Modbus devices whose latest poll succeeded or failed; devices not "
        "polled yet are in neither.",
        defaults=FieldDefaults(unit="short", decimals=0, min=0, custom=_TS),
    )
    chart(
        "Poll success (all devices)",
        [series("mean", "poll_success_ratio", alias="devices answering")],
        description="Share of the polled Modbus devices whose latest poll succeeded.",
        defaults=FieldDefaults(
            unit="percentunit",
            min=0,
            max=1,
            custom=_TS,
            thresholds=_steps(("red", None), ("orange", 0.95), ("green", 0.99)),
        ),
    )
    chart(
        "Unresolved alerts",
        [series("last", "unresolved_alerts", alias="unresolved")],
        description="Alerts open in the ticket database (firing, or waiting for "
        "acknowledgement); no point while the ticket database does not answer.",
        defaults=FieldDefaults(unit="short", decimals=0, min=0, custom=_TS),
    )
