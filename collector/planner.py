"""Read planning: a device's registers merged into the fewest Modbus reads.

Every request costs a round trip through a (often serial) gateway, so registers that sit close
together are read in one request, reading through small unused gaps. Limits come from the
protocol (125 registers / 2000 bits per read) and from devices that reject reads of addresses
they do not implement (``max_gap``; 0 reads only contiguous registers). Each device's source
may narrow the limits, or ask for one request per field, for firmware that needs it.

:func:`device_reads` is the one place a device's profile, its per-device ``overrides`` and its
limits become the reads a poll sends; the collector and ``facmon modbus plan`` both use it.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from collector.profile import BIT_TABLES, Profile, ProfileError, Register, Table, validate_profile
from config.models import ModbusSource, RegisterOverride

__all__ = [
    "FUNCTION_CODES",
    "MAX_BITS",
    "MAX_REGISTERS",
    "Read",
    "apply_overrides",
    "device_reads",
    "override_problems",
    "plan",
    "polled_registers",
]

MAX_REGISTERS = 125  # Modbus limit for function codes 3 and 4
MAX_BITS = 2000  # Modbus limit for function codes 1 and 2

# Read function code of each table; the only function codes facmon ever sends.
FUNCTION_CODES: dict[str, int] = {"coil": 1, "discrete": 2, "holding": 3, "input": 4}
_TABLE_ORDER: tuple[Table, ...] = ("holding", "input", "coil", "discrete")


@dataclass(frozen=True, slots=True)
class Read:
    """One request: ``count`` registers (or bits) of ``table`` from ``address``.

    ``registers`` pairs each register it carries with its offset from ``address``.
    """

    table: Table
    address: int
    count: int
    registers: tuple[tuple[Register, int], ...]

    @property
    def function_code(self) -> int:
        return FUNCTION_CODES[self.table]

    @property
    def end(self) -> int:
        """First address after the read."""
        return self.address + self.count


def _read(table: Table, regs: list[Register]) -> Read:
    start = regs[0].address
    end = max(r.address + r.count for r in regs)
    return Read(table, start, end - start, tuple((r, r.address - start) for r in regs))


def plan(
    registers: Iterable[Register],
    max_registers: int = MAX_REGISTERS,
    max_bits: int = MAX_BITS,
    max_gap: int = 10,
    one_request_per_field: bool = False,
) -> list[Read]:
    """The fewest reads covering ``registers`` within the limits; deterministic.

    Registers are grouped per table (holding, input, coil, discrete) and merged left to right
    while the read stays within ``max_registers`` (``max_bits`` for coil/discrete tables) and
    the unused span between neighbours is at most ``max_gap``. Greedy merging of address-sorted
    registers is optimal here: each read takes the longest run that fits, and any plan's first
    read can take no more. With ``one_request_per_field`` every register is a read of its own.
    Raises ValueError for a register longer than the limit.
    """
    if max_registers < 1 or max_bits < 1 or max_gap < 0:
        raise ValueError("max_registers and max_bits must be >= 1, max_gap >= 0")
    by_table: dict[str, list[Register]] = {}
    for reg in registers:
        by_table.setdefault(reg.table, []).append(reg)
    reads: list[Read] = []
    for table in _TABLE_ORDER:
        regs = sorted(by_table.get(table, ()), key=lambda r: (r.address, r.count, r.metric))
        limit = max_bits if table in BIT_TABLES else max_registers
        group: list[Register] = []
        start = end = 0
        for reg in regs:
            if reg.count > limit:
                raise ValueError(
                    f"register {reg.metric!r} spans {reg.count}, more than one read ({limit})"
                )
            reg_end = reg.address + reg.count
            if (
                group
                and not one_request_per_field
                and reg.address - end <= max_gap
                and max(end, reg_end) - start <= limit
            ):
                group.append(reg)
                end = max(end, reg_end)
                continue
            if group:
                reads.append(_read(table, group))
            group, start, end = [reg], reg.address, reg_end
        if group:
            reads.append(_read(table, group))
    return reads


# -- a device's registers and reads -------------------------------------------------------------


def override_problems(
    profile: Profile, overrides: Mapping[str, RegisterOverride]
) -> dict[str | None, list[str]]:
    """Problems the ``overrides`` cause in ``profile``, by the metric they concern.

    Key None holds problems that name no overridden metric. Empty when the overrides apply.
    """
    problems: dict[str | None, list[str]] = {}
    metrics = [r.metric for r in profile.registers]
    for metric in overrides:
        if metric not in metrics:
            close = difflib.get_close_matches(metric, metrics, n=1, cutoff=0.6)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            problems.setdefault(metric, []).append(
                f"override of unknown metric {metric!r}: profile {profile.name!r} has no such "
                f"register{hint}"
            )
    known = {m: o for m, o in overrides.items() if m in metrics}
    for text in validate_profile(_overridden(profile, known)):
        # Profile problems name a register as 'metric' or, for a field error, (metric).
        named = [m for m in known if f"'{m}'" in text or f"({m})" in text]
        key = named[0] if named else None
        problems.setdefault(key, []).append(text if key else f"with the overrides: {text}")
    return problems


def _overridden(profile: Profile, overrides: Mapping[str, RegisterOverride]) -> dict[str, Any]:
    """The profile as data, with the overridden fields replaced."""
    data = profile.model_dump(exclude={"registers", "defaults"})
    data["registers"] = [
        {**r.model_dump(exclude_defaults=True), **_changes(overrides.get(r.metric))}
        for r in profile.registers
    ]
    return data


def _changes(override: RegisterOverride | None) -> dict[str, Any]:
    return {} if override is None else override.changes()


def apply_overrides(profile: Profile, overrides: Mapping[str, RegisterOverride]) -> Profile:
    """``profile`` with one device's register overrides applied and validated.

    Raises ProfileError naming each metric whose override does not fit the profile (unknown
    metric, a type its table cannot hold, an address that overlaps another register, ...).
    """
    if not overrides:
        return profile
    problems = override_problems(profile, overrides)
    if problems:
        raise ProfileError(
            f"{profile.name!r} with per-device overrides",
            [text for texts in problems.values() for text in texts],
        )
    try:
        return Profile.model_validate(_overridden(profile, overrides))
    except ValidationError as exc:  # override_problems found nothing, so this is a bug
        raise ProfileError(profile.name, [str(exc)]) from exc


def polled_registers(profile: Profile) -> list[Register]:
    """The registers a poll reads: strings cannot be a Reading's float value, so profiles list
    them for reference only."""
    return [r for r in profile.registers if r.type != "string"]


def device_reads(source: ModbusSource, profile: Profile) -> list[Read]:
    """The reads one poll of a device sends: its profile with the source's ``overrides``
    applied, planned within the source's limits.

    ``profile`` is the profile as shipped or loaded (before overrides). Raises ProfileError when
    the overrides do not fit, ValueError when a register does not fit the read limits.
    """
    registers = polled_registers(apply_overrides(profile, source.overrides))
    return plan(
        registers,
        max_registers=source.max_registers_per_read,
        max_bits=source.max_bits_per_read,
        max_gap=source.max_gap,
        one_request_per_field=source.one_request_per_field,
    )
