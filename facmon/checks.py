"""Config checks that need more than the config package knows: device profiles live in the
collector, so the composition root joins the two for ``facmon config check`` and start-up."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pydantic import TypeAdapter, ValidationError

from alerts.conditions import enum_of, state_codes
from collector.planner import apply_overrides, override_problems, polled_registers
from collector.profile import BIT_TABLES, Profile, ProfileError, load_profile
from collector.transport import connection_key
from config.loader import Loc
from config.models import (
    AnyRule,
    Device,
    ModbusRtuSource,
    ModbusSource,
    MqttSource,
    RegisterOverride,
    Rule,
    Source,
    StateRule,
)
from facmon.selfmetrics import reserved_device_check

_SOURCE: TypeAdapter[ModbusSource | MqttSource] = TypeAdapter(Source)
_RULE: TypeAdapter[AnyRule] = TypeAdapter(Rule)
_LINE_FIELDS = ("baudrate", "parity", "bytesize", "stopbits")


def _devices(data: Any) -> list[Any]:
    devices = data.get("devices") if isinstance(data, dict) else None
    return devices if isinstance(devices, list) else []


def _source_of(dev: Any) -> ModbusSource | None:
    """The device's Modbus source if it is valid on its own (the model validation reports the
    rest); None for other sources too."""
    src = dev.get("source") if isinstance(dev, dict) else None
    try:
        source = _SOURCE.validate_python(src)
    except ValidationError:
        return None
    return None if isinstance(source, MqttSource) else source


def _overrides(src: Any) -> dict[str, RegisterOverride]:
    raw = src.get("overrides") if isinstance(src, dict) else None
    out: dict[str, RegisterOverride] = {}
    for metric, fields in raw.items() if isinstance(raw, dict) else ():
        try:
            out[str(metric)] = RegisterOverride.model_validate(fields)
        except ValidationError:
            continue  # the model validation reports it, on its own line
    return out


def _override_check(base: Loc, profile: Profile, src: Any) -> Iterable[tuple[Loc, str]]:
    overrides = _overrides(src)
    for metric, texts in override_problems(profile, overrides).items():
        loc: Loc = (*base, "overrides", metric) if metric else (*base, "overrides")
        for text in texts:
            yield loc, text


def _limit_check(base: Loc, profile: Profile, dev: Any) -> Iterable[tuple[Loc, str]]:
    source = _source_of(dev)
    if source is None:
        return
    try:
        registers = polled_registers(apply_overrides(profile, source.overrides))
    except ProfileError:
        return  # reported by the override check
    words = [r for r in registers if r.table not in BIT_TABLES]
    longest = max(words, key=lambda r: r.count, default=None)
    if longest is not None and longest.count > source.max_registers_per_read:
        yield (
            (*base, "max_registers_per_read"),
            f"register {longest.metric!r} spans {longest.count} registers and cannot be split "
            f"across reads: max_registers_per_read must be at least {longest.count}",
        )


def profile_check(data: Any) -> Iterable[tuple[Loc, str]]:
    """Every device's profile exists, is valid, is meant for the device's kind, and the device's
    overrides and read limits fit it."""
    for i, dev in enumerate(_devices(data)):
        src = dev.get("source") if isinstance(dev, dict) else None
        name = src.get("profile") if isinstance(src, dict) else None
        if not isinstance(name, str):
            continue  # the model validation reports a missing or mistyped profile
        base: Loc = ("devices", i, "source")
        loc: Loc = (*base, "profile")
        try:
            profile = load_profile(name)
        except FileNotFoundError as e:
            yield loc, str(e)
            continue
        except ProfileError as e:
            yield loc, "; ".join(e.problems)
            continue
        kind = dev.get("kind")
        if isinstance(kind, str) and profile.kind and profile.kind != kind:
            yield loc, f"profile {name!r} is for {profile.kind} devices, not {kind}"
        yield from _override_check(base, profile, src)
        yield from _limit_check(base, profile, dev)


def bus_check(data: Any) -> Iterable[tuple[Loc, str]]:
    """Devices that share a connection can share it: one serial port has one set of line
    settings, one gateway port speaks one framing."""
    first: dict[tuple[str, ...], tuple[str, ModbusSource]] = {}
    for i, dev in enumerate(_devices(data)):
        source = _source_of(dev)
        if source is None:
            continue
        dev_id = str(dev.get("id", f"devices[{i}]"))
        key = connection_key(source)
        seen = first.get(key)
        if seen is None:
            first[key] = (dev_id, source)
            continue
        other_id, other = seen
        base: Loc = ("devices", i, "source")
        if isinstance(source, ModbusRtuSource) and isinstance(other, ModbusRtuSource):
            for name in _LINE_FIELDS:
                mine, theirs = getattr(source, name), getattr(other, name)
                if mine != theirs:
                    yield (
                        (*base, name),
                        f"{name} {mine} differs from {theirs} of device '{other_id}' on "
                        f"{other.port} (devices on one serial port share its line settings)",
                    )
        elif source.type != other.type and not isinstance(other, ModbusRtuSource):
            yield (
                (*base, "type"),
                f"{source.type} differs from {other.type} of device '{other_id}' on "
                f"{other.host}:{other.port} (one gateway port speaks one framing)",
            )


def mqtt_check(data: Any) -> Iterable[tuple[Loc, str]]:
    """Devices fed over MQTT need the site's 'mqtt' block, or nothing would ever feed them."""
    if isinstance(data, dict) and data.get("mqtt") is not None:
        return
    for i, dev in enumerate(_devices(data)):
        src = dev.get("source") if isinstance(dev, dict) else None
        if isinstance(src, dict) and src.get("type") == "mqtt":
            yield (
                ("devices", i, "source", "type"),
                "device is fed over MQTT but the config has no 'mqtt' block (broker and "
                "subscriptions)",
            )


def state_rule_check(data: Any) -> Iterable[tuple[Loc, str]]:
    """The states a state rule names exist in the enum of every device it selects (its
    profile with the device's overrides); devices without a profile need codes."""
    devices: list[Device] = []
    for dev in _devices(data):
        try:
            devices.append(Device.model_validate(dev))
        except ValidationError:
            continue  # the model validation reports it
    rules = data.get("rules") if isinstance(data, dict) else None
    for i, raw in enumerate(rules if isinstance(rules, list) else []):
        try:
            rule = _RULE.validate_python(raw)
        except ValidationError:
            continue
        if not isinstance(rule, StateRule):
            continue
        field = "in" if rule.in_ is not None else "not_in"
        reported: set[str] = set()
        for device in devices:
            if not rule.select.matches(device):
                continue
            names = enum_of(device, rule.metric)
            _, unknown = state_codes(rule, names)
            for name in unknown:
                if name in reported:
                    continue
                reported.add(name)
                j = rule.values.index(name)
                if names:
                    known = ", ".join(names.values())
                    why = f"device '{device.id}' has no state '{name}' of {rule.metric} ({known})"
                else:
                    why = (
                        f"device '{device.id}' has no named states of {rule.metric} (no enum "
                        f"in its profile): give the state's code, e.g. 7"
                    )
                yield ("rules", i, field, j), why


CHECKS = (profile_check, bus_check, mqtt_check, state_rule_check, reserved_device_check)
