"""A typed model of the Grafana dashboard JSON facmon generates, and the checks Grafana cannot
make before a dashboard is opened.

Why not grafana-foundation-sdk: it installs from PyPI, but its models (the Grafana 11.x
branches) have no InfluxDB query type, and their ``AnnotationQuery`` carries only the fields of
Grafana's built-in annotation source, so an InfluxQL annotation (``target.query``,
``textColumn``) cannot be expressed in them. This model covers the part of the dashboard
schema (schemaVersion 39, Grafana 10/11) that facmon writes, with Grafana's own field names
(``refId``, ``gridPos``, ``fieldConfig`` ...), and forbids every other key: a typo or a field
Grafana does not know fails validation instead of being silently ignored by Grafana.

:func:`Dashboard.model_validate` on a generated file is the validation; beyond the schema it
checks what makes a dashboard show nothing without an error: panel ids that clash, panels
outside the 24-column grid, template variables a query uses but the dashboard does not
define, and expressions that name a query the panel does not have.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

INFLUXDB = "influxdb"
EXPRESSION = "__expr__"  # Grafana's server-side expressions (math across queries)
SCHEMA_VERSION: Literal[39] = 39
GRID_COLUMNS = 24
UID_PATTERN = r"^[A-Za-z0-9_-]{1,40}$"  # Grafana's limit for dashboard and folder uids

# Variables Grafana defines itself; anything else a query names must be a template variable.
BUILTIN_VARIABLES = frozenset(
    {
        "timeFilter",
        "__interval",
        "__interval_ms",
        "interval",
        "__range",
        "__range_s",
        "__range_ms",
        "__from",
        "__to",
        "__dashboard",
        "__org",
        "__user",
        "__name",
    }
)
# $name, ${name} and [[name]]; $tag_x/$m/$col are alias patterns, not variables, and only
# occur in 'alias'.
_VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]")
_EXPR_REF = re.compile(r"\$(\w+)")


# Grafana names the entries of templating and annotations 'list', which shadows the builtin
# inside those classes.
_List = list
_list = list


def variables_in(text: str) -> set[str]:
    """Names of the variables ``text`` refers to."""
    return {a or b or c for a, b, c in _VARIABLE.findall(text)}


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class DataSourceRef(_Model):
    type: str = Field(description="Plugin id: influxdb, or __expr__ for expressions")
    uid: str = Field(description="Uid of the datasource")


class GridPos(_Model):
    h: int = Field(ge=1, description="Height in grid rows (30 px each)")
    w: int = Field(ge=1, le=GRID_COLUMNS, description="Width in grid columns")
    x: int = Field(ge=0, lt=GRID_COLUMNS, description="Left column")
    y: int = Field(ge=0, description="Top row")

    @model_validator(mode="after")
    def _inside(self) -> GridPos:
        if self.x + self.w > GRID_COLUMNS:
            raise ValueError(f"panel at x={self.x} with w={self.w} overflows 24 columns")
        return self


class InfluxQLTarget(_Model):
    """A raw InfluxQL query of the InfluxDB datasource in InfluxQL mode."""

    refId: str = Field(pattern=r"^[A-Z]{1,3}$", description="Query id within the panel")
    datasource: DataSourceRef
    query: str = Field(min_length=1, description="InfluxQL with Grafana's macros")
    rawQuery: Literal[True] = True
    resultFormat: Literal["time_series", "table"] = "time_series"
    alias: str | None = Field(default=None, description="Series name pattern: $tag_device ...")
    hide: bool | None = None


class MathExpression(_Model):
    """A server-side expression combining the panel's other queries, e.g. ``$A / $B``."""

    refId: str = Field(pattern=r"^[A-Z]{1,3}$")
    datasource: DataSourceRef
    type: Literal["math"] = "math"
    expression: str = Field(min_length=1)
    hide: bool | None = None


Target = InfluxQLTarget | MathExpression


class Threshold(_Model):
    color: str
    value: float | None = Field(default=None, description="None for the base step")


class Thresholds(_Model):
    mode: Literal["absolute", "percentage"] = "absolute"
    steps: list[Threshold] = Field(min_length=1)


class MappingResult(_Model):
    text: str | None = None
    color: str | None = None
    index: int | None = None


class ValueMapping(_Model):
    type: Literal["value"] = "value"
    options: dict[str, MappingResult]


class RangeOptions(_Model):
    from_: float | None = Field(default=None, alias="from")
    to: float | None = None
    result: MappingResult


class RangeMapping(_Model):
    type: Literal["range"] = "range"
    options: RangeOptions


Mapping = Annotated[ValueMapping | RangeMapping, Field(discriminator="type")]


class FieldDefaults(_Model):
    unit: str | None = None
    decimals: int | None = None
    min: float | None = None
    max: float | None = None
    displayName: str | None = None
    noValue: str | None = None
    thresholds: Thresholds | None = None
    mappings: list[Mapping] | None = None
    color: dict[str, str] | None = None
    custom: dict[str, Any] | None = None


class Matcher(_Model):
    id: str
    options: Any = None


class Property(_Model):
    id: str
    value: Any = None


class Override(_Model):
    matcher: Matcher
    properties: list[Property]


class FieldConfig(_Model):
    defaults: FieldDefaults = Field(default_factory=FieldDefaults)
    overrides: list[Override] = Field(default_factory=list)


class Link(_Model):
    title: str
    url: str
    targetBlank: bool | None = None


class Transformation(_Model):
    id: str
    options: dict[str, Any] = Field(default_factory=dict)


PanelType = Literal["timeseries", "stat", "state-timeline", "bargauge", "barchart", "text"]


class Panel(_Model):
    id: int = Field(ge=1)
    type: PanelType
    title: str
    description: str | None = None
    gridPos: GridPos
    datasource: DataSourceRef | None = None
    targets: list[Target] = Field(default_factory=list)
    fieldConfig: FieldConfig = Field(default_factory=FieldConfig)
    options: dict[str, Any] = Field(default_factory=dict)
    interval: str | None = Field(default=None, description="Lower bound of $__interval")
    timeFrom: str | None = Field(default=None, description="Panel's own range, e.g. now/d")
    maxDataPoints: int | None = None
    links: list[Link] = Field(default_factory=list)
    transformations: list[Transformation] = Field(default_factory=list)

    @model_validator(mode="after")
    def _consistent(self) -> Panel:
        refs = [t.refId for t in self.targets]
        if len(set(refs)) != len(refs):
            raise ValueError(f"panel {self.title!r}: refIds repeat: {refs}")
        for t in self.targets:
            if isinstance(t, MathExpression):
                missing = set(_EXPR_REF.findall(t.expression)) - set(refs)
                if missing:
                    raise ValueError(
                        f"panel {self.title!r}: expression {t.expression!r} names missing "
                        f"quer{'ies' if len(missing) > 1 else 'y'} {', '.join(sorted(missing))}"
                    )
        if self.type != "text" and not self.targets:
            raise ValueError(f"panel {self.title!r} has no queries")
        return self


class RowPanel(_Model):
    id: int = Field(ge=1)
    type: Literal["row"] = "row"
    title: str
    gridPos: GridPos
    collapsed: bool = False
    panels: list[Panel] = Field(default_factory=list)


class VariableOption(_Model):
    text: str | list[str]
    value: str | list[str]
    selected: bool | None = None


class QueryVariable(_Model):
    type: Literal["query"] = "query"
    name: str = Field(pattern=r"^\w+$")
    label: str | None = None
    datasource: DataSourceRef
    query: str = Field(min_length=1, description="InfluxQL, usually SHOW TAG VALUES")
    definition: str | None = None
    refresh: Literal[1, 2] = Field(
        default=1, description="1: on dashboard load, 2: on time range change"
    )
    multi: bool = True
    includeAll: bool = True
    allValue: str | None = Field(
        default=None, description="Text for All; Grafana puts it in verbatim (no escaping)"
    )
    current: VariableOption | None = None
    sort: int = Field(default=1, ge=0, le=8)
    hide: Literal[0, 1, 2] = 0
    regex: str = ""


class Templating(_Model):
    list: _List[QueryVariable] = Field(default_factory=_list)


class AnnotationTarget(_Model):
    """An InfluxQL annotation query, as Grafana's InfluxDB datasource stores it."""

    refId: str = "Anno"
    query: str = Field(min_length=1)
    rawQuery: Literal[True] = True
    fromAnnotations: Literal[True] = True
    queryType: Literal["tags"] = "tags"
    textColumn: str = ""
    tagsColumn: str = ""
    titleColumn: str = ""
    timeEndColumn: str = ""


class Annotation(_Model):
    name: str
    datasource: DataSourceRef
    enable: bool = True
    hide: bool = False
    iconColor: str
    target: AnnotationTarget


class Annotations(_Model):
    list: _List[Annotation] = Field(default_factory=_list)


class DashboardLink(_Model):
    title: str
    type: Literal["link", "dashboards"]
    url: str = ""
    tags: list[str] = Field(default_factory=list)
    asDropdown: bool = False
    includeVars: bool = False
    keepTime: bool = False
    targetBlank: bool = False
    icon: Literal["external link", "dashboard", "doc", "info"] = "external link"
    tooltip: str = ""


class TimeRange(_Model):
    from_: str = Field(alias="from")
    to: str


class Dashboard(_Model):
    """One dashboard, as written to ``<uid>.json`` and posted to ``/api/dashboards/db``."""

    id: int | None = Field(default=None, description="Grafana's own number; None = by uid")
    uid: str = Field(pattern=UID_PATTERN)
    title: str = Field(min_length=1)
    description: str | None = None
    tags: list[str] = Field(default_factory=list)
    timezone: str = Field(description="IANA zone, 'browser' or 'utc'")
    editable: bool = True
    graphTooltip: Literal[0, 1, 2] = 1
    schemaVersion: Literal[39] = SCHEMA_VERSION
    version: int | None = None
    refresh: str = "1m"
    time: TimeRange
    templating: Templating = Field(default_factory=Templating)
    annotations: Annotations = Field(default_factory=Annotations)
    links: list[DashboardLink] = Field(default_factory=list)
    panels: list[Annotated[Panel | RowPanel, Field(discriminator="type")]] = Field(
        default_factory=list
    )

    @model_validator(mode="after")
    def _consistent(self) -> Dashboard:
        ids: list[int] = []
        for p in self.all_panels():
            ids.append(p.id)
        for row in self.panels:
            if isinstance(row, RowPanel):
                ids.append(row.id)
        dup = sorted({i for i in ids if ids.count(i) > 1})
        if dup:
            raise ValueError(f"panel ids repeat: {dup}")
        defined = {v.name for v in self.templating.list}
        for where, text in self.query_texts():
            unknown = variables_in(text) - defined - BUILTIN_VARIABLES
            if unknown:
                raise ValueError(
                    f"{where} uses undefined variable(s) {', '.join(sorted(unknown))}: {text}"
                )
        return self

    def all_panels(self) -> list[Panel]:
        """Every panel, those inside collapsed rows included (rows themselves left out)."""
        out: list[Panel] = []
        for p in self.panels:
            if isinstance(p, RowPanel):
                out.extend(p.panels)
            else:
                out.append(p)
        return out

    def query_texts(self) -> list[tuple[str, str]]:
        """(where, InfluxQL) of every panel query, variable and annotation."""
        out: list[tuple[str, str]] = []
        for p in self.all_panels():
            for t in p.targets:
                if isinstance(t, InfluxQLTarget):
                    out.append((f"panel {p.title!r} query {t.refId}", t.query))
        for v in self.templating.list:
            out.append((f"variable {v.name!r}", v.query))
        for a in self.annotations.list:
            out.append((f"annotation {a.name!r}", a.target.query))
        return out

    def to_json(self) -> dict[str, Any]:
        """The JSON object Grafana reads (aliases, no unset optional keys)."""
        data: dict[str, Any] = self.model_dump(mode="json", by_alias=True, exclude_none=True)
        return data
