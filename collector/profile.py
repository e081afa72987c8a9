"""Device profiles: a device's register map as data (collector/profiles/*.yaml).

A profile names the metrics a device model exposes and where they live in its Modbus tables.
Sites pick a shipped profile by name or point at their own YAML file; both go through the
same validation so a typo in a site's profile fails at load time with a list of problems
rather than as garbage readings at 3 a.m.
"""

from __future__ import annotations

import contextlib
import importlib.resources
import re
import threading
from collections.abc import Mapping
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

__all__ = [
    "BIT_TABLES",
    "REGISTER_TABLES",
    "TYPE_WORDS",
    "DataType",
    "Profile",
    "ProfileError",
    "ProfileLoader",
    "Register",
    "Table",
    "WordOrder",
    "available_profiles",
    "load_profile",
    "validate_profile",
]

Table = Literal["holding", "input", "coil", "discrete"]
WordOrder = Literal["ABCD", "DCBA", "BADC", "CDAB"]
DataType = Literal[
    "bit", "int16", "uint16", "int32", "uint32", "int64", "uint64", "float32", "float64", "string"
]

BIT_TABLES: frozenset[str] = frozenset({"coil", "discrete"})
REGISTER_TABLES: frozenset[str] = frozenset({"holding", "input"})

# Width in 16-bit registers of each fixed-size register type.
TYPE_WORDS: Mapping[str, int] = {
    "int16": 1,
    "uint16": 1,
    "int32": 2,
    "uint32": 2,
    "int64": 4,
    "uint64": 4,
    "float32": 2,
    "float64": 4,
}
INTEGER_TYPES: frozenset[str] = frozenset(
    {"bit", "int16", "uint16", "int32", "uint32", "int64", "uint64"}
)
UNSIGNED_TYPES: frozenset[str] = frozenset({"uint16", "uint32", "uint64"})
_ADDRESS_SPACE = 65536
_SKIP_SEMANTICS = "facmon_skip_semantics"


class ProfileError(ValueError):
    """A profile that cannot be used; ``problems`` lists every problem found, one per entry."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(f"invalid profile {source}:\n  - " + "\n  - ".join(problems))


class Register(BaseModel):
    """One metric of a device: where it lives and how its raw words become a value."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    metric: str = Field(min_length=1, description="Metric name in readings, e.g. 'voltage_a'")
    address: int = Field(ge=0, le=65535, description="Zero-based address in its table")
    table: Table = Field(default="holding", description="holding | input | coil | discrete")
    type: DataType = Field(description="Data type of the raw value")
    length: int | None = Field(
        default=None, ge=1, le=125, description="Registers a string spans (strings only)"
    )
    word_order: WordOrder = Field(
        default="ABCD",
        description="Byte order of multi-byte values: ABCD big-endian, DCBA little-endian, "
        "BADC bytes swapped within words, CDAB words swapped",
    )
    scale: float = Field(default=1.0, description="value = raw * scale + offset")
    offset: float = Field(default=0.0, description="value = raw * scale + offset")
    unit: str = Field(default="", description="Unit of the scaled value, e.g. 'kWh'")
    counter: bool = Field(default=False, description="Cumulative counter (energy, volume, runs)")
    enum: dict[int, str] | None = Field(
        default=None, description="Names of the raw codes of a state register"
    )
    nan_value: float | None = Field(
        default=None, description="Raw value the device sends for 'no value' (e.g. 0xFFFF)"
    )
    min: float | None = Field(default=None, description="Lowest plausible scaled value")
    max: float | None = Field(default=None, description="Highest plausible scaled value")
    max_rate: float | None = Field(
        default=None,
        gt=0,
        description="Counters: highest plausible increase per second in the scaled unit "
        "(e.g. kWh/s); faster jumps are flagged UNCERTAIN",
    )

    @field_validator("enum", mode="before")
    @classmethod
    def _enum_names_are_text(cls, v: Any) -> Any:
        if isinstance(v, Mapping) and any(isinstance(n, bool) for n in v.values()):
            raise ValueError(
                "enum names must be text; a YAML 1.1 parser reads unquoted yes/no/on/off as "
                "booleans (quote them, or load with collector.profile.ProfileLoader)"
            )
        return v

    @property
    def count(self) -> int:
        """Registers (register tables) or bits (bit tables) the value spans."""
        if self.type == "bit":
            return 1
        if self.type == "string":
            # An invalid string register without a length spans nothing; validation reports it.
            return self.length or 0
        return TYPE_WORDS[self.type]

    @property
    def bits(self) -> int:
        """Width of the raw value in bits."""
        return 1 if self.type == "bit" else 16 * self.count

    @property
    def rollover(self) -> float | None:
        """Scaled value at which an unsigned integer counter wraps to 0, else None."""
        if not self.counter or self.type not in UNSIGNED_TYPES:
            return None
        return float(2**self.bits) * self.scale


class Profile(BaseModel):
    """A device model's register map; ``defaults`` are already applied to every register."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, description="Profile name, e.g. 'generic_power_meter_3p'")
    description: str = Field(default="", description="What device this profile reads")
    kind: Literal["power_meter", "elevator", "water_meter", "sensor"] = Field(
        description="Device kind the profile is written for"
    )
    source: str = Field(default="", description="Where the register map comes from")
    defaults: dict[str, Any] = Field(
        default_factory=dict, description="Field values applied to registers that omit them"
    )
    registers: tuple[Register, ...] = Field(min_length=1, description="The register map")

    @model_validator(mode="before")
    @classmethod
    def _apply_defaults(cls, data: Any) -> Any:
        return _with_defaults(data)

    @model_validator(mode="after")
    def _consistent(self, info: ValidationInfo) -> Profile:
        if isinstance(info.context, Mapping) and info.context.get(_SKIP_SEMANTICS):
            return self
        problems = _semantic_problems(self.registers)
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def register(self, metric: str) -> Register:
        for r in self.registers:
            if r.metric == metric:
                return r
        raise KeyError(metric)


def _with_defaults(data: Any) -> Any:
    if not isinstance(data, Mapping):
        return data
    defaults = data.get("defaults") or {}
    registers = data.get("registers")
    if not isinstance(defaults, Mapping) or not isinstance(registers, list | tuple):
        return data
    out = dict(data)
    out["registers"] = [{**defaults, **r} if isinstance(r, Mapping) else r for r in registers]
    return out


def _describe(reg: Register) -> str:
    return f"register {reg.metric!r} ({reg.table} {reg.address})"


def _register_problems(reg: Register) -> list[str]:
    problems: list[str] = []
    where = _describe(reg)
    if reg.type == "bit" and reg.table not in BIT_TABLES:
        problems.append(f"{where}: type 'bit' needs table coil or discrete, not {reg.table}")
    if reg.type != "bit" and reg.table in BIT_TABLES:
        problems.append(f"{where}: table {reg.table} holds bits; use type 'bit', not {reg.type}")
    if reg.type == "string" and reg.length is None:
        problems.append(f"{where}: type 'string' needs 'length' (number of registers)")
    if reg.type != "string" and reg.length is not None:
        problems.append(
            f"{where}: 'length' applies to strings only; {reg.type} spans {reg.count} "
            "register(s) by itself"
        )
    if reg.address + reg.count > _ADDRESS_SPACE:
        problems.append(f"{where}: spans past the end of the table (address 65535)")
    if reg.scale == 0:
        problems.append(f"{where}: scale 0 would make every value 0")
    if reg.enum is not None and reg.type not in INTEGER_TYPES:
        problems.append(f"{where}: 'enum' needs an integer type, not {reg.type}")
    if reg.min is not None and reg.max is not None and reg.min > reg.max:
        problems.append(f"{where}: min {reg.min} is above max {reg.max}")
    if reg.type == "string" and (reg.counter or reg.enum is not None):
        problems.append(f"{where}: a string cannot be a counter or an enum")
    if reg.max_rate is not None and not reg.counter:
        problems.append(f"{where}: 'max_rate' applies to counters only (counter: true)")
    return problems


def _semantic_problems(registers: tuple[Register, ...] | list[Register]) -> list[str]:
    problems: list[str] = []
    seen: dict[str, Register] = {}
    for reg in registers:
        problems.extend(_register_problems(reg))
        if reg.metric in seen:
            problems.append(
                f"duplicate metric {reg.metric!r}: {_describe(seen[reg.metric])} and "
                f"{_describe(reg)}"
            )
        else:
            seen[reg.metric] = reg
    by_table: dict[str, list[Register]] = {}
    for reg in registers:
        if reg.count > 0:
            by_table.setdefault(reg.table, []).append(reg)
    for regs in by_table.values():
        regs.sort(key=lambda r: (r.address, r.count))
        # Compare against the furthest-reaching register so far: a long register can overlap
        # several later ones, not just its neighbour.
        reach: Register | None = None
        for reg in regs:
            if reach is not None and reg.address < reach.address + reach.count:
                problems.append(
                    f"{_describe(reg)} overlaps {_describe(reach)} "
                    f"(which spans {reach.address}..{reach.address + reach.count - 1})"
                )
            if reach is None or reg.address + reg.count > reach.address + reach.count:
                reach = reg
    return problems


def _format_error(err: Any, data: Mapping[str, Any]) -> str:
    loc = list(err.get("loc", ()))
    parts: list[str] = []
    if len(loc) >= 2 and loc[0] == "registers" and isinstance(loc[1], int):
        regs = data.get("registers")
        metric = None
        if (
            isinstance(regs, list | tuple)
            and loc[1] < len(regs)
            and isinstance(regs[loc[1]], Mapping)
        ):
            metric = regs[loc[1]].get("metric")
        parts.append(f"registers[{loc[1]}]" + (f" ({metric})" if metric else ""))
        loc = loc[2:]
    parts.extend(str(x) for x in loc)
    where = ".".join(parts) if parts else "profile"
    return f"{where}: {err.get('msg', 'invalid')}"


def validate_profile(profile_data: Any) -> list[str]:
    """Every problem with a profile (a parsed YAML mapping or a Profile); empty when usable."""
    if isinstance(profile_data, Profile):
        return _semantic_problems(profile_data.registers)
    if not isinstance(profile_data, Mapping):
        return [f"profile: expected a mapping, got {type(profile_data).__name__}"]
    data = _with_defaults(profile_data)
    try:
        profile = Profile.model_validate(data, context={_SKIP_SEMANTICS: True})
    except ValidationError as exc:
        regs = data.get("registers")
        problems = [
            _format_error(e, data)
            for e in exc.errors()
            # pydantic adds "too short" when every register failed; those failures say more.
            if not (e["type"] == "too_short" and tuple(e["loc"]) == ("registers",) and regs)
        ]
        # Still check the registers that are individually valid, so one typo does not hide
        # an overlap or a duplicate elsewhere in the map.
        valid: list[Register] = []
        if isinstance(regs, list | tuple):
            for r in regs:
                with contextlib.suppress(ValidationError):
                    valid.append(Register.model_validate(r))
        return problems + _semantic_problems(valid)
    return _semantic_problems(profile.registers)


_cache: dict[tuple[str, int], Profile] = {}
_cache_lock = threading.Lock()


def _profiles_dir() -> Traversable:
    # profiles/ is package data of ``collector`` (pyproject), not a package of its own.
    return importlib.resources.files("collector").joinpath("profiles")


def available_profiles() -> list[str]:
    """Names of the profiles shipped with facmon, sorted."""
    root = _profiles_dir()
    return sorted(
        p.name.removesuffix(".yaml")
        for p in root.iterdir()
        if p.is_file() and p.name.endswith(".yaml")
    )


class ProfileLoader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 booleans: only true/false are booleans.

    Under YAML 1.1 ``{0: no, 1: yes}`` (the natural way to write an enum) parses to booleans.
    """


ProfileLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
ProfileLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool",
    re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
    list("tTfF"),
)


def _parse(text: str, source: str) -> Profile:
    try:
        data = yaml.load(text, Loader=ProfileLoader)  # a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise ProfileError(source, [f"not valid YAML: {exc}"]) from exc
    problems = validate_profile(data)
    if problems:
        raise ProfileError(source, problems)
    return Profile.model_validate(data)


def load_profile(name_or_path: str) -> Profile:
    """A shipped profile by name (see :func:`available_profiles`) or a profile YAML file by path.

    Results are cached; a file is re-read when its modification time changes.
    Raises :class:`ProfileError` (a ValueError) listing every problem, or FileNotFoundError.
    """
    looks_like_path = (
        "/" in name_or_path or "\\" in name_or_path or name_or_path.endswith((".yaml", ".yml"))
    )
    if not looks_like_path:
        key = (f"shipped:{name_or_path}", 0)
        with _cache_lock:
            hit = _cache.get(key)
        if hit is not None:
            return hit
        resource = _profiles_dir().joinpath(f"{name_or_path}.yaml")
        if not resource.is_file():
            raise FileNotFoundError(
                f"no shipped profile {name_or_path!r}; available: "
                f"{', '.join(available_profiles())} (or give a path to a YAML file)"
            )
        profile = _parse(resource.read_text(encoding="utf-8"), repr(name_or_path))
    else:
        path = Path(name_or_path).expanduser().resolve()
        if not path.is_file():
            raise FileNotFoundError(f"profile file not found: {path}")
        key = (str(path), path.stat().st_mtime_ns)
        with _cache_lock:
            hit = _cache.get(key)
        if hit is not None:
            return hit
        profile = _parse(path.read_text(encoding="utf-8"), str(path))
    with _cache_lock:
        _cache[key] = profile
    return profile
