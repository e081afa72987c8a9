"""Read a site config file and report every problem in it, each with its file line.

The file is composed with PyYAML first (nodes keep their line numbers), ``${ENV}`` references in
string values are replaced on the nodes, and only then is the data built and validated by the
pydantic models in ``config.models``. Validation errors, unset variables, unknown fields and
cross-reference mistakes (a device in an undeclared building, a rule naming an unknown device)
are all collected into one ``ConfigError`` so that a user fixes the file in one pass.
"""

from __future__ import annotations

import difflib
import os
import re
import types
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import annotated_types
import yaml
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails

from config.escalation import escalation_problems
from config.maintenance import maintenance_problems
from config.models import DEFAULT_RULE_KIND, SiteConfig, ThresholdRule
from config.notify import notify_problems
from config.oncall import oncall_problems

__all__ = [
    "ConfigError",
    "Problem",
    "check_file",
    "format_problems",
    "load_config",
    "load_config_text",
    "sample_config",
]

SAMPLE_RESOURCE = "site.sample.yaml"

Step = str | int
Loc = tuple[Step, ...]
# An extra check on the raw (interpolated) data: yields (field path, message) problems.
Check = Callable[[Any], Iterable[tuple[Loc, str]]]
_LineOf = Callable[[Sequence[Step]], int | None]

_STR_TAG = "tag:yaml.org,2002:str"
_MERGE_TAG = "tag:yaml.org,2002:merge"
_IDENT_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# `$${` is the escape for a literal `${`; an unterminated `${` is reported, not passed through.
_ENV_TOKEN = re.compile(r"\$\$\{|\$\{([^}]*)\}|\$\{")
_SIMPLE_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a config file, located by line and field path."""

    file: str
    line: int | None
    path: str
    message: str

    def __str__(self) -> str:
        name = Path(self.file).name or self.file
        where = name if self.line is None else f"{name}:{self.line}"
        return f"{where} {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


def format_problems(problems: Iterable[Problem]) -> str:
    """One problem per line, in the order given."""
    return "\n".join(str(p) for p in problems)


class ConfigError(Exception):
    """The config file has problems; ``problems`` lists all of them."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems: list[Problem] = list(problems)
        super().__init__(format_problems(self.problems))

    def __str__(self) -> str:
        return format_problems(self.problems)


def load_config(
    path: Path | str, env: Mapping[str, str] | None = None, checks: Sequence[Check] = ()
) -> SiteConfig:
    """Load and validate a site config file; relative paths resolve against its directory.

    ``checks`` are extra checks on the raw data (e.g. that device profiles exist and are valid,
    which only the collector knows); their problems are reported with all the others.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise ConfigError(
            [Problem(str(path), None, "", f"not UTF-8 text (byte {e.start} cannot be decoded)")]
        ) from None
    except OSError as e:
        reason = e.strerror or e.__class__.__name__
        raise ConfigError([Problem(str(path), None, "", f"cannot read file: {reason}")]) from None
    return load_config_text(
        text, filename=str(path), env=env, base_dir=p.absolute().parent, checks=checks
    )


def load_config_text(
    text: str,
    filename: str = "<string>",
    env: Mapping[str, str] | None = None,
    base_dir: Path | None = None,
    checks: Sequence[Check] = (),
) -> SiteConfig:
    """Validate config text. ``env`` defaults to ``os.environ``, ``base_dir`` to the cwd."""
    return _Loader(text, filename, os.environ if env is None else env).load(
        Path.cwd() if base_dir is None else base_dir, checks
    )


def check_file(
    path: Path | str, env: Mapping[str, str] | None = None, checks: Sequence[Check] = ()
) -> list[Problem]:
    """Every problem in the file, for ``facmon config check``; empty when the file is valid."""
    try:
        load_config(path, env=env, checks=checks)
    except ConfigError as e:
        return e.problems
    return []


def sample_config() -> str:
    """The commented sample site config shipped with facmon."""
    return resources.files("config").joinpath(SAMPLE_RESOURCE).read_text(encoding="utf-8")


# --------------------------------------------------------------------------------------------
# Loading


class _Missing:
    pass


_MISSING = _Missing()


class _Loader:
    def __init__(self, text: str, filename: str, env: Mapping[str, str]) -> None:
        self.text = text
        self.filename = filename
        self.env = env
        self.lines: dict[Loc, int] = {}
        # path -> (value, template) for values that came from the environment, for scrubbing.
        self.interpolated: dict[Loc, tuple[str, str]] = {}
        self.env_problem_paths: set[Loc] = set()
        self.problems: list[Problem] = []
        self._interpolated_nodes: set[int] = set()

    def problem(self, line: int | None, loc: Sequence[Step], message: str) -> None:
        self.problems.append(Problem(self.filename, line, _format_path(loc), message))

    def fail(self) -> ConfigError:
        order = sorted(
            range(len(self.problems)),
            key=lambda i: (self.problems[i].line is None, self.problems[i].line or 0, i),
        )
        return ConfigError([self.problems[i] for i in order])

    def load(self, base_dir: Path, checks: Sequence[Check] = ()) -> SiteConfig:
        try:
            root = yaml.compose(self.text, Loader=yaml.SafeLoader)
        except yaml.MarkedYAMLError as e:
            self._yaml_problem(e)
            raise self.fail() from None
        except yaml.YAMLError as e:
            self.problem(None, (), f"YAML error: {e}")
            raise self.fail() from None
        if root is None:
            self.problem(None, (), "the file is empty; see `facmon config sample` for a start")
            raise self.fail()
        if not isinstance(root, yaml.MappingNode):
            self.problem(
                _line(root),
                (),
                "the file must be a mapping of sections (site, buildings, devices, ...)",
            )
            raise self.fail()

        self._walk(root, (), _line(root), set())
        try:
            loader = yaml.SafeLoader("")
            try:
                data = loader.construct_document(root)
            finally:
                loader.dispose()
        except yaml.MarkedYAMLError as e:
            self._yaml_problem(e, "YAML error")
            raise self.fail() from None

        _resolve_profile_paths(data, base_dir)
        cross = list(_cross_check(data, self._line_of))
        for check in checks:
            cross.extend(check(data))
        storage_checked = any(loc[:1] == ("storage",) for loc, _ in cross)
        config: SiteConfig | None = None
        try:
            config = SiteConfig.model_validate(data)
        except ValidationError as e:
            for err in e.errors(include_url=False):
                if storage_checked and tuple(err["loc"]) == ("storage",):
                    continue  # the cross-check already said it, on the 'backend' line
                self._validation_problem(err, data)
        if config is not None:
            cross.extend(_rating_check(config))
        for loc, message in cross:
            self._add(loc, message)
        if self.problems or config is None:
            raise self.fail()
        return _resolve_paths(config, base_dir)

    # -- YAML nodes ---------------------------------------------------------------------------

    def _yaml_problem(self, e: yaml.MarkedYAMLError, label: str = "YAML syntax error") -> None:
        mark = e.problem_mark or e.context_mark
        message = e.problem or e.context or "invalid YAML"
        if e.context and e.problem:
            ctx_line = f" started at line {e.context_mark.line + 1}" if e.context_mark else ""
            message = f"{e.problem} ({e.context}{ctx_line})"
        self.problem(None if mark is None else mark.line + 1, (), f"{label}: {message}")

    def _walk(
        self, node: yaml.Node, loc: Loc, line: int, seen_nodes: set[int], record: bool = True
    ) -> None:
        if record:
            self.lines.setdefault(loc, line)
        if isinstance(node, yaml.ScalarNode):
            self._interpolate(node, loc)
            return
        if id(node) in seen_nodes:
            # An alias of a collection already walked: its errors point at the alias, and
            # nested aliases ("billion laughs") cannot make the walk exponential.
            return
        seen_nodes.add(id(node))
        if isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                self._walk(item, (*loc, i), _line(item), seen_nodes, record)
        elif isinstance(node, yaml.MappingNode):
            seen: dict[str, int] = {}
            merged: list[yaml.Node] = []
            names = [_key_name(key) for key, _ in node.value]
            last = {name: i for i, name in enumerate(names)}
            for i, (key, value) in enumerate(node.value):
                if key.tag == _MERGE_TAG:
                    merged.append(value)
                    continue
                name = names[i]
                key_line = _line(key)
                if name in seen:
                    self.problem(
                        key_line,
                        (*loc, name),
                        f"duplicate key '{name}' (first at line {seen[name]})",
                    )
                else:
                    seen[name] = key_line
                scalar = isinstance(value, yaml.ScalarNode) and value.value != ""
                # A repeated key's last value is the one used: only its lines are recorded.
                self._walk(
                    value,
                    (*loc, name),
                    _line(value) if scalar else key_line,
                    seen_nodes,
                    record and last[name] == i,
                )
            # `<<: *anchor` merges keys that this mapping does not set itself.
            for m in merged:
                for sub in m.value if isinstance(m, yaml.SequenceNode) else [m]:
                    if isinstance(sub, yaml.MappingNode):
                        self._walk(sub, loc, line, seen_nodes, record)

    def _interpolate(self, node: yaml.ScalarNode, loc: Loc) -> None:
        if node.tag != _STR_TAG or "$" not in node.value or id(node) in self._interpolated_nodes:
            return
        self._interpolated_nodes.add(id(node))
        template: str = node.value
        used_env = False
        unset: list[str] = []
        malformed: list[str] = []

        def replace(m: re.Match[str]) -> str:
            nonlocal used_env
            token = m.group(0)
            if token == "$${":
                return "${"
            name = m.group(1)
            if name is None or not _ENV_NAME.match(name):
                malformed.append(token)
                return token
            if name not in self.env:
                unset.append(name)
                return token
            used_env = True
            return self.env[name]

        value = _ENV_TOKEN.sub(replace, template)
        line = _line(node)
        for name in dict.fromkeys(unset):
            self.problem(line, loc, f"environment variable {name} is not set")
        for token in dict.fromkeys(malformed):
            self.problem(
                line,
                loc,
                f"bad environment reference {token!r}: write ${{NAME}} with NAME made of "
                "letters, digits and '_' (and $${ for a literal ${)",
            )
        if unset or malformed:
            self.env_problem_paths.add(loc)
            return  # keep the template; validation errors for this value are suppressed
        if used_env:
            self.interpolated[loc] = (value, template)
        node.value = value

    # -- problems -----------------------------------------------------------------------------

    def _line_of(self, loc: Sequence[Step]) -> int | None:
        for i in range(len(loc), -1, -1):
            line = self.lines.get(_norm(loc[:i]))
            if line is not None:
                return line
        return None

    def _add(self, loc: Loc, message: str) -> None:
        if any(loc[: len(p)] == p for p in self.env_problem_paths):
            return
        secret = self.interpolated.get(_norm(loc))
        if secret is not None:
            message = _scrub(message, *secret)
        self.problem(self._line_of(loc), loc, message)

    def _validation_problem(self, err: ErrorDetails, data: Any) -> None:
        loc = _clean_loc(err["loc"], data)
        kind = err["type"]
        ctx: dict[str, Any] = dict(err.get("ctx") or {})
        from_env = _norm(loc) in self.interpolated
        ftype, finfo = _type_at(loc, data)
        message: str
        if kind == "missing":
            message = "required field missing"
        elif kind == "extra_forbidden":
            name = str(loc[-1])
            message = f"unknown field '{name}'"
            parent, _ = _type_at(loc[:-1], data)
            names = _field_names(parent)
            close = difflib.get_close_matches(name, names, n=1, cutoff=0.6)
            if close:
                message += f" (did you mean '{close[0]}'?)"
            elif names:
                message += f" (expected one of: {', '.join(names)})"
        elif kind in ("union_tag_invalid", "union_tag_not_found"):
            disc = str(ctx.get("discriminator", "'type'")).strip("'\"")
            tags = _union_tags(ftype, disc) or [
                t.strip().strip("'\"") for t in str(ctx.get("expected_tags", "")).split(",")
            ]
            what = str(loc[-1]) if loc and isinstance(loc[-1], str) else "value"
            loc = (*loc, disc)
            if kind == "union_tag_not_found":
                message = f"required field missing (one of: {', '.join(tags)})"
            else:
                tag = ctx.get("tag")
                close = difflib.get_close_matches(str(tag), tags, n=1, cutoff=0.8)
                hint = (
                    f"did you mean '{close[0]}'?"
                    if close and not from_env
                    else f"expected one of: {', '.join(tags)}"
                )
                message = f"unknown {what} {disc} {_show(tag, from_env)} ({hint})"
        elif kind in ("greater_than_equal", "less_than_equal", "greater_than", "less_than"):
            message = _bounds_message(finfo, ctx)
        elif kind == "literal_error":
            choices = _literal_choices(ftype)
            expected = ", ".join(choices) if choices else str(ctx.get("expected", ""))
            got = "" if from_env else f" (got {_show(err.get('input'), False)})"
            message = f"must be one of: {expected}{got}"
        elif kind == "string_type":
            value = err.get("input")
            if isinstance(value, int | float) and not from_env:
                message = f"must be text: write it in quotes, e.g. '{value}'"
            else:
                message = f"must be text, not {_kind_of(value)}"
        elif kind == "string_pattern_mismatch":
            if ctx.get("pattern") == _IDENT_PATTERN:
                message = (
                    "must be an identifier: start with a letter or digit, then letters, digits, "
                    "'_', '-' or '.', at most 64 characters"
                )
            else:
                message = f"must match the pattern {ctx.get('pattern')}"
        elif kind == "too_short":
            n = ctx.get("min_length", 1)
            if ctx.get("field_type") == "List":
                message = f"must have at least {n} entr{'y' if n == 1 else 'ies'}"
            else:
                message = f"must be at least {n} long"
        elif kind in ("int_parsing", "int_type", "int_from_float"):
            message = "must be a whole number"
        elif kind in ("float_parsing", "float_type", "finite_number"):
            message = "must be a number"
        elif kind in ("bool_parsing", "bool_type"):
            message = "must be true or false"
        elif kind == "list_type":
            message = f"must be a list (lines starting with '- '), not {_kind_of(err.get('input'))}"
        elif kind in ("dict_type", "model_type", "model_attributes_type"):
            message = f"must be a mapping of 'key: value' lines, not {_kind_of(err.get('input'))}"
        elif kind in ("value_error", "assertion_error"):
            message = err["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")
        elif kind in ("path_type", "path_not_file", "path_not_directory"):
            message = "must be a file system path"
        else:
            message = err["msg"][:1].lower() + err["msg"][1:]
        if "[key]" in err["loc"]:
            message = f"the key {message}"
        self._add(loc, message)


def _key_name(key: yaml.Node) -> str:
    return str(key.value) if isinstance(key, yaml.ScalarNode) else "<complex key>"


def _line(node: yaml.Node) -> int:
    return int(node.start_mark.line) + 1


def _norm(loc: Sequence[Step]) -> Loc:
    """Keys as the line map stores them: mapping keys as text, list indices as ints."""
    return tuple(s if isinstance(s, int) else str(s) for s in loc)


def _clean_loc(loc: Sequence[Step], data: Any) -> Loc:
    """Drop pydantic's own loc parts (discriminator tags, '[key]') to get a path in the file."""
    out: list[Step] = []
    node: Any = data
    for step in loc:
        if step == "[key]":
            continue
        if (
            isinstance(node, dict)
            and isinstance(step, str)
            and step not in node
            and step in (node.get("type"), node.get("kind", DEFAULT_RULE_KIND))
        ):
            # The tag a discriminated union inserts, e.g. 'modbus_tcp', or a rule's kind
            # (threshold when the rule does not say).
            continue
        out.append(step)
        if isinstance(node, dict):
            node = node.get(step, node.get(str(step), _MISSING))
        elif isinstance(node, list) and isinstance(step, int) and 0 <= step < len(node):
            node = node[step]
        else:
            node = _MISSING
    return tuple(out)


def _format_path(loc: Sequence[Step]) -> str:
    out = ""
    for step in loc:
        if isinstance(step, int):
            out += f"[{step}]"
        elif _SIMPLE_KEY.match(step):
            out += f".{step}" if out else step
        else:
            out += f"[{step!r}]"
    return out


def _scrub(message: str, value: str, template: str) -> str:
    """Show the ${VAR} reference instead of a value that came from the environment."""
    if not value:
        return message
    message = message.replace(repr(value), repr(template))
    if len(value) >= 4:
        message = message.replace(value, template)
    return message


def _show(value: Any, from_env: bool) -> str:
    return "(from the environment)" if from_env else repr(value)


def _kind_of(value: Any) -> str:
    if value is None:
        return "empty"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


# --------------------------------------------------------------------------------------------
# Model introspection for friendlier messages


def _strip(tp: Any) -> Any:
    """Unwrap Annotated[...] and Optional[...] down to the type that matters."""
    while True:
        origin = get_origin(tp)
        if origin is not None and getattr(tp, "__metadata__", None) is not None:
            tp = get_args(tp)[0]
        elif origin in (Union, types.UnionType):
            args = [a for a in get_args(tp) if a is not type(None)]
            if len(args) != 1:
                return tp
            tp = args[0]
        else:
            return tp


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _model_fields(model: type[BaseModel]) -> Iterator[tuple[str, FieldInfo]]:
    for name, info in model.model_fields.items():
        yield (info.alias or name), info


def _type_at(loc: Sequence[Step], data: Any = _MISSING) -> tuple[Any, FieldInfo | None]:
    """The declared type (and field) at a path of SiteConfig; (None, None) when unknown.

    ``data`` (the raw config) picks the member of a discriminated union, e.g. the source model
    named by a source's ``type``.
    """
    tp: Any = SiteConfig
    info: FieldInfo | None = None
    node: Any = data
    for step in loc:
        tp = _member(_strip(tp), node)
        origin = get_origin(tp)
        info = None
        if _is_model(tp) and isinstance(step, str):
            found = dict(_model_fields(tp)).get(step)
            if found is None:
                return None, None
            info, tp = found, found.annotation
        elif origin is list and isinstance(step, int):
            tp = get_args(tp)[0]
        elif origin is dict:
            tp = get_args(tp)[1]
        else:
            return None, None
        if isinstance(node, dict):
            node = node.get(step, _MISSING)
        elif isinstance(node, list) and isinstance(step, int) and 0 <= step < len(node):
            node = node[step]
        else:
            node = _MISSING
    member = _member(_strip(tp), node)
    return (member if _is_model(member) else tp), info


def _member(tp: Any, node: Any) -> Any:
    """The model of a union of models that ``node`` is (by its 'type'), else ``tp`` itself."""
    if get_origin(tp) not in (Union, types.UnionType):
        return tp
    models = [m for m in get_args(tp) if _is_model(m)]
    if not models or len(models) != len(get_args(tp)):
        return tp
    # Sources are told apart by 'type', rules by 'kind' (threshold when left out).
    for disc, default in (("type", None), ("kind", DEFAULT_RULE_KIND)):
        tag = node.get(disc, default) if isinstance(node, dict) else None
        for m in models:
            field = dict(_model_fields(m)).get(disc)
            if field is not None and str(tag) in _literal_choices(field.annotation):
                return m
    return tp


def _field_names(tp: Any) -> list[str]:
    tp = _strip(tp)
    return [name for name, _ in _model_fields(tp)] if _is_model(tp) else []


def _literal_choices(tp: Any) -> list[str]:
    tp = _strip(tp)
    if get_origin(tp) is Literal:
        return [str(a) for a in get_args(tp)]
    return []


def _union_tags(tp: Any, disc: str) -> list[str]:
    tp = _strip(tp)
    members = get_args(tp) if get_origin(tp) in (Union, types.UnionType) else (tp,)
    tags: list[str] = []
    for m in members:
        if _is_model(m):
            field = dict(_model_fields(m)).get(disc)
            if field is not None:
                tags += _literal_choices(field.annotation)
    return tags


def _num(v: Any) -> str:
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def _bounds_message(info: FieldInfo | None, ctx: Mapping[str, Any]) -> str:
    lo: tuple[str, Any] | None = None
    hi: tuple[str, Any] | None = None
    for meta in info.metadata if info is not None else ():
        if isinstance(meta, annotated_types.Ge):
            lo = ("ge", meta.ge)
        elif isinstance(meta, annotated_types.Gt):
            lo = ("gt", meta.gt)
        elif isinstance(meta, annotated_types.Le):
            hi = ("le", meta.le)
        elif isinstance(meta, annotated_types.Lt):
            hi = ("lt", meta.lt)
    if lo is None and hi is None:
        for key in ("ge", "gt"):
            if key in ctx:
                lo = (key, ctx[key])
        for key in ("le", "lt"):
            if key in ctx:
                hi = (key, ctx[key])
    if lo and hi and lo[0] == "ge" and hi[0] == "le":
        return f"must be {_num(lo[1])}..{_num(hi[1])}"
    parts = []
    if lo:
        parts.append(("at least " if lo[0] == "ge" else "greater than ") + _num(lo[1]))
    if hi:
        parts.append(("at most " if hi[0] == "le" else "less than ") + _num(hi[1]))
    return "must be " + " and ".join(parts) if parts else "out of range"


# --------------------------------------------------------------------------------------------
# Cross-checks on the raw data: tolerant of any shape, so they run beside pydantic's errors.


def _ids(items: Any) -> Iterator[tuple[int, str]]:
    if isinstance(items, list):
        for i, item in enumerate(items):
            if isinstance(item, dict) and isinstance(item.get("id"), str):
                yield i, item["id"]


def _unique_ids(section: Loc, items: Any, what: str, line_of: _LineOf) -> Iterator[tuple[Loc, str]]:
    first: dict[str, int] = {}
    for i, ident in _ids(items):
        if ident in first:
            at = line_of((*section, first[ident], "id"))
            where = f"first at line {at}" if at is not None else f"same as {section[-1]}[{i}]"
            yield (*section, i, "id"), f"duplicate {what} id '{ident}' ({where})"
        else:
            first[ident] = i


def _unknown(what: str, name: str, known: Iterable[str]) -> str:
    known = list(dict.fromkeys(known))
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    if close:
        return f"unknown {what} '{name}' (did you mean '{close[0]}'?)"
    if known and len(known) <= 10:
        return f"unknown {what} '{name}' (declared: {', '.join(known)})"
    return f"unknown {what} '{name}'"


def _cross_check(data: Any, line_of: _LineOf) -> Iterator[tuple[Loc, str]]:
    if not isinstance(data, dict):
        return
    buildings = data.get("buildings")
    devices = data.get("devices", [])
    rules = data.get("rules", [])
    yield from _unique_ids(("buildings",), buildings, "building", line_of)
    yield from _unique_ids(("devices",), devices, "device", line_of)
    yield from _unique_ids(("rules",), rules, "rule", line_of)
    building_ids = [b for _, b in _ids(buildings)]
    device_ids = [d for _, d in _ids(devices)]

    # Without any declared building every location would be flagged; pydantic says it once.
    if building_ids and isinstance(devices, list):
        for i, dev in enumerate(devices):
            where = dev.get("location") if isinstance(dev, dict) else None
            name = where.get("building") if isinstance(where, dict) else None
            if isinstance(name, str) and name not in building_ids:
                yield (
                    ("devices", i, "location", "building"),
                    _unknown("building", name, building_ids),
                )

    if isinstance(devices, list) and device_ids:
        for i, dev in enumerate(devices):
            parent = dev.get("parent") if isinstance(dev, dict) else None
            if isinstance(parent, str):
                if parent not in device_ids:
                    yield ("devices", i, "parent"), _unknown("device", parent, device_ids)
                elif parent == dev.get("id"):
                    yield ("devices", i, "parent"), "a meter cannot be its own parent"

    tariffs = data.get("tariffs")
    if isinstance(tariffs, list) and building_ids:
        yield from _unique_ids(("tariffs",), tariffs, "tariff", line_of)
        for i, tariff in enumerate(tariffs):
            names = tariff.get("buildings") if isinstance(tariff, dict) else None
            for j, name in enumerate(names if isinstance(names, list) else []):
                if isinstance(name, str) and name not in building_ids:
                    yield ("tariffs", i, "buildings", j), _unknown("building", name, building_ids)

    if isinstance(rules, list):
        for i, rule in enumerate(rules):
            select = rule.get("select") if isinstance(rule, dict) else None
            if not isinstance(select, dict):
                continue
            checks: list[tuple[str, str, list[str], bool]] = [
                ("devices", "device", device_ids, isinstance(devices, list)),
                ("buildings", "building", building_ids, bool(building_ids)),
            ]
            for key, what, known, trusted in checks:
                names = select.get(key)
                if not trusted or not isinstance(names, list):
                    continue
                for j, name in enumerate(names):
                    if isinstance(name, str) and name not in known:
                        yield ("rules", i, "select", key, j), _unknown(what, name, known)

    yield from escalation_problems(data)
    yield from notify_problems(data)
    yield from maintenance_problems(data)

    oncall = data.get("oncall")
    if isinstance(oncall, dict):
        people = oncall.get("people", [])
        yield from _unique_ids(("oncall", "people"), people, "person", line_of)
        fallback = oncall.get("fallback")
        if isinstance(fallback, str) and isinstance(people, list):
            person_ids = [p for _, p in _ids(people)]
            if fallback not in person_ids:
                yield ("oncall", "fallback"), _unknown("person", fallback, person_ids)
    yield from oncall_problems(data)

    storage = data.get("storage")
    if (
        isinstance(storage, dict)
        and storage.get("backend") == "influxdb"
        and storage.get("influxdb") is None
    ):
        yield ("storage", "backend"), "'influxdb' needs an 'influxdb' block under 'storage'"


def _rating_check(config: SiteConfig) -> Iterator[tuple[Loc, str]]:
    """A rule whose levels are shares of a rating needs that rating on every device it
    selects."""
    for i, rule in enumerate(config.rules):
        if not isinstance(rule, ThresholdRule) or not rule.rated:
            continue
        key = rule.rating_key
        missing = [d.id for d in config.devices if rule.select.matches(d) and key not in d.ratings]
        if not missing:
            continue
        field = "above_rating" if rule.above_rating is not None else "below_rating"
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        yield (
            ("rules", i, field),
            f"selected device(s) {', '.join(missing[:3])}{more} have no rating '{key}' (add "
            f"ratings: {{{key}: ...}} to the device, or narrow 'select')",
        )


# --------------------------------------------------------------------------------------------
# Paths


def _absolute(p: Path, base_dir: Path) -> Path:
    p = p.expanduser()
    if p.is_absolute():
        return p
    return Path(os.path.normpath(base_dir.absolute() / p))


def _resolve_profile_paths(data: Any, base_dir: Path) -> None:
    """A profile given as a file path is relative to the config file, like every other path."""
    devices = data.get("devices") if isinstance(data, dict) else None
    for dev in devices if isinstance(devices, list) else []:
        source = dev.get("source") if isinstance(dev, dict) else None
        if not isinstance(source, dict):
            continue
        profile = source.get("profile")
        if isinstance(profile, str) and (
            profile.endswith((".yaml", ".yml")) or "/" in profile or os.sep in profile
        ):
            source["profile"] = str(_absolute(Path(profile), base_dir))


def _resolve_paths(config: SiteConfig, base_dir: Path) -> SiteConfig:
    storage = config.storage
    embedded = storage.embedded
    outbox = storage.outbox
    if embedded.path is not None:
        embedded = embedded.model_copy(update={"path": _absolute(embedded.path, base_dir)})
    if outbox.path is not None:
        outbox = outbox.model_copy(update={"path": _absolute(outbox.path, base_dir)})
    storage = storage.model_copy(update={"embedded": embedded, "outbox": outbox})
    reports = config.reports
    source = reports.savings.temperature
    if source is not None and source.csv is not None:
        source = source.model_copy(update={"csv": _absolute(source.csv, base_dir)})
        savings = reports.savings.model_copy(update={"temperature": source})
        reports = reports.model_copy(update={"savings": savings})
    return config.model_copy(
        update={
            "data_dir": _absolute(config.data_dir, base_dir),
            "storage": storage,
            "reports": reports,
        }
    )
