"""Read planning: a device's registers merged into the fewest Modbus reads.

Every request costs a round trip through a (often serial) gateway, so registers that sit close
together are read in one request, reading through small unused gaps. Limits come from the
protocol (125 registers / 2000 bits per read) and from devices that reject reads of addresses
they do not implement (``max_gap``; 0 reads only contiguous registers).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from collector.profile import BIT_TABLES, Register, Table

__all__ = ["FUNCTION_CODES", "MAX_BITS", "MAX_REGISTERS", "Read", "plan"]

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
) -> list[Read]:
    """The fewest reads covering ``registers`` within the limits; deterministic.

    Registers are grouped per table (holding, input, coil, discrete) and merged left to right
    while the read stays within ``max_registers`` (``max_bits`` for coil/discrete tables) and
    the unused span between neighbours is at most ``max_gap``. Greedy merging of address-sorted
    registers is optimal here: each read takes the longest run that fits, and any plan's first
    read can take no more. Raises ValueError for a register longer than the limit.
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
            if group and reg.address - end <= max_gap and max(end, reg_end) - start <= limit:
                group.append(reg)
                end = max(end, reg_end)
                continue
            if group:
                reads.append(_read(table, group))
            group, start, end = [reg], reg.address, reg_end
        if group:
            reads.append(_read(table, group))
    return reads
