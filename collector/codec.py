"""Raw Modbus words <-> engineering values, for every data type and word order of a profile.

Word orders name where the bytes of a big-endian value ``A B C D`` (A most significant) end up
on the wire, two bytes per register:

- ``ABCD``: big-endian, registers ``[AB, CD]`` (the Modbus default);
- ``DCBA``: fully little-endian, registers ``[DC, BA]``;
- ``BADC``: bytes swapped within each register, ``[BA, DC]``;
- ``CDAB``: registers swapped (low word first), ``[CD, AB]``.

The same rule extends to 64-bit values (CDAB of ``A..H`` is ``[GH, EF, CD, AB]``), to 16-bit
values (DCBA and BADC swap the two bytes, CDAB changes nothing) and to strings.

``decode`` gives ``raw * scale + offset``; ``encode`` is its inverse, for simulators and tests.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass

from collector.profile import Register
from store.reading import Quality

__all__ = [
    "BlockDecoder",
    "block_decoder",
    "decode",
    "decode_raw",
    "decode_text",
    "encode",
    "encode_raw",
    "encode_text",
    "quality_of",
    "scaled",
]

_VALUE_FORMATS = {
    "int16": "h",
    "uint16": "H",
    "int32": "i",
    "uint32": "I",
    "int64": "q",
    "uint64": "Q",
    "float32": "f",
    "float64": "d",
}
_FLOAT_TYPES = frozenset({"float32", "float64"})


@dataclass(frozen=True, slots=True)
class _Layout:
    """Precompiled structs for one (type, word order, register count)."""

    words: struct.Struct  # registers <-> bytes in value order (big- or little-endian words)
    value: struct.Struct | None  # bytes <-> the number; None for strings
    reverse: bool  # registers arrive in reverse order (DCBA, CDAB)
    count: int
    is_float: bool
    lo: int  # integer range, for encode
    hi: int


_layouts: dict[tuple[str, str, int], _Layout] = {}


def _layout(reg: Register) -> _Layout:
    key = (reg.type, reg.word_order, reg.count)
    lay = _layouts.get(key)
    if lay is not None:
        return lay
    if reg.type == "bit":
        raise TypeError("bit registers have no word layout")
    n = reg.count
    if n <= 0:
        raise ValueError(f"register {reg.metric!r}: type {reg.type} needs a length")
    # BADC and DCBA swap the bytes within each register: reading the words little-endian
    # undoes that; DCBA and CDAB also reverse the register order.
    swap_bytes = reg.word_order in ("BADC", "DCBA")
    reverse = reg.word_order in ("DCBA", "CDAB")
    words = struct.Struct(f"{'<' if swap_bytes else '>'}{n}H")
    fmt = _VALUE_FORMATS.get(reg.type)
    value = struct.Struct(">" + fmt) if fmt else None
    bits = 16 * n
    if reg.type.startswith("uint"):
        lo, hi = 0, 2**bits - 1
    else:
        lo, hi = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    lay = _Layout(words, value, reverse, n, reg.type in _FLOAT_TYPES, lo, hi)
    _layouts[key] = lay
    return lay


def _check_len(reg: Register, words: Sequence[int] | Sequence[bool]) -> None:
    if len(words) != reg.count:
        raise ValueError(
            f"register {reg.metric!r} ({reg.type}) spans {reg.count} "
            f"{'bit' if reg.type == 'bit' else 'register'}(s), got {len(words)}"
        )


def _to_bytes(reg: Register, lay: _Layout, words: Sequence[int] | Sequence[bool]) -> bytes:
    _check_len(reg, words)
    ws = list(reversed(words)) if lay.reverse else words
    try:
        return lay.words.pack(*ws)
    except struct.error as exc:
        raise ValueError(f"register {reg.metric!r}: words must be 0..65535: {exc}") from exc


def decode_raw(register: Register, words: Sequence[int] | Sequence[bool]) -> float:
    """The raw number in the words, before scale and offset."""
    if register.type == "bit":
        _check_len(register, words)
        return 1.0 if words[0] else 0.0
    lay = _layout(register)
    if lay.value is None:
        raise TypeError(f"register {register.metric!r} is a string: use decode_text")
    return float(lay.value.unpack(_to_bytes(register, lay, words))[0])


def scaled(register: Register, raw: float) -> float:
    """Engineering value of a raw number; enum codes stay as they are."""
    if register.enum is not None:
        return raw
    return raw * register.scale + register.offset


def decode(register: Register, words: Sequence[int] | Sequence[bool]) -> float:
    """Engineering value (``raw * scale + offset``) of a register's words or bits.

    Enum registers give the raw code; strings raise TypeError (see :func:`decode_text`);
    the wrong number of words or a word outside 0..65535 raises ValueError.
    """
    return scaled(register, decode_raw(register, words))


def decode_text(register: Register, words: Sequence[int]) -> str:
    """Text of a string register; trailing NULs and spaces are dropped."""
    if register.type != "string":
        raise TypeError(f"register {register.metric!r} is {register.type}, not a string")
    data = _to_bytes(register, _layout(register), words)
    return data.rstrip(b"\x00 ").decode("utf-8", errors="replace")


def encode_raw(register: Register, raw: float) -> list[int] | list[bool]:
    """Words (or bits) holding a raw number; for simulators that need sentinels or garbage."""
    if register.type == "bit":
        return [bool(raw)]
    lay = _layout(register)
    if lay.value is None:
        raise TypeError(f"register {register.metric!r} is a string: use encode_text")
    if lay.is_float:
        number: float | int = raw
    else:
        if not math.isfinite(raw):
            raise ValueError(f"register {register.metric!r} ({register.type}) cannot hold {raw}")
        number = round(raw)
        if not lay.lo <= number <= lay.hi:
            raise ValueError(
                f"register {register.metric!r}: raw {number} outside {register.type} range "
                f"{lay.lo}..{lay.hi}"
            )
    try:
        data = lay.value.pack(number)
    except (struct.error, OverflowError) as exc:
        raise ValueError(f"register {register.metric!r} cannot hold {raw}: {exc}") from exc
    words = list(lay.words.unpack(data))
    if lay.reverse:
        words.reverse()
    return words


def encode(register: Register, value: float) -> list[int] | list[bool]:
    """Words (or bits) a device would send for an engineering value; inverse of :func:`decode`.

    Integer types round ``(value - offset) / scale`` to the nearest integer and raise ValueError
    when it does not fit the type.
    """
    if register.enum is not None or (register.scale == 1 and register.offset == 0):
        # Unscaled: pass the value through so 64-bit integers beyond 2**53 stay exact.
        return encode_raw(register, value)
    return encode_raw(register, (value - register.offset) / register.scale)


def encode_text(register: Register, text: str) -> list[int]:
    """Words of a string register, NUL-padded; raises ValueError when the text is too long."""
    if register.type != "string":
        raise TypeError(f"register {register.metric!r} is {register.type}, not a string")
    lay = _layout(register)
    data = text.encode("utf-8")
    size = 2 * lay.count
    if len(data) > size:
        raise ValueError(f"register {register.metric!r}: {len(data)} bytes do not fit in {size}")
    words = list(lay.words.unpack(data.ljust(size, b"\x00")))
    if lay.reverse:
        words.reverse()
    return words


def quality_of(register: Register, raw_value: float) -> Quality:
    """Quality of a raw (unscaled) value.

    BAD: the profile's ``nan_value`` sentinel, NaN or infinity, or a scaled value outside the
    profile's min/max. UNCERTAIN: an enum code the profile does not name.
    """
    if register.nan_value is not None and raw_value == register.nan_value:
        return Quality.BAD
    if not math.isfinite(raw_value):
        return Quality.BAD
    value = scaled(register, raw_value)
    if register.min is not None and value < register.min:
        return Quality.BAD
    if register.max is not None and value > register.max:
        return Quality.BAD
    if register.enum is not None and int(raw_value) not in register.enum:
        return Quality.UNCERTAIN
    return Quality.GOOD


@dataclass(frozen=True, slots=True)
class _Field:
    register: Register
    offset: int  # word offset in the read
    value: struct.Struct | None  # unpacks the raw number straight from the read's bytes
    plain: bool  # no scale/offset (or an enum): the raw number is the value
    checked: bool  # has a sentinel, bounds or an enum: needs quality_of


@dataclass(frozen=True, slots=True)
class BlockDecoder:
    """Decodes every register of one planned read from its words, built once per read.

    ABCD and DCBA values (and 16-bit values in any order) are unpacked straight from the read's
    bytes; other word orders, bits and strings go through :func:`decode_raw`. Registers without
    a sentinel, bounds or enum skip :func:`quality_of`: they are GOOD unless not finite, which
    the caller checks anyway. Same results as decode_raw/scaled/quality_of, about 3x faster.

    :meth:`columns` is the collector's hot path: when every field of the read unpacks in one
    byte order, the whole read is one ``struct`` unpack (pad bytes skip the gaps), and the
    values come back as a list in field order (``metrics``/``units`` give the rest).
    """

    words: struct.Struct | None  # None: no field is unpacked straight from bytes (bits)
    fields: tuple[_Field, ...]
    metrics: tuple[str, ...] = ()
    units: tuple[str, ...] = ()
    block: struct.Struct | None = None  # every field in one unpack; None: use decode()
    scaled: tuple[tuple[int, float, float], ...] = ()  # (field, scale, offset) to apply
    checked: tuple[int, ...] = ()  # fields that need quality_of
    ints: bool = False  # some field unpacks to an int: made float like decode() does
    good: tuple[Quality, ...] = ()  # every field GOOD
    counters: tuple[int, ...] = ()  # fields that are counters (the collector's hygiene)

    def decode(
        self, words: Sequence[int] | Sequence[bool]
    ) -> list[tuple[Register, float | None, Quality]]:
        """(register, value or None if it cannot be decoded, quality) for every register."""
        data = self.words.pack(*words) if self.words is not None else b""
        out: list[tuple[Register, float | None, Quality]] = []
        good = Quality.GOOD
        for f in self.fields:
            reg = f.register
            if f.value is not None:
                raw: float = f.value.unpack_from(data, 2 * f.offset)[0]
            else:
                try:
                    raw = decode_raw(reg, words[f.offset : f.offset + reg.count])
                except (ValueError, TypeError):
                    out.append((reg, None, Quality.BAD))
                    continue
            value = raw if f.plain else raw * reg.scale + reg.offset
            out.append((reg, float(value), quality_of(reg, raw) if f.checked else good))
        return out

    def columns(
        self, words: Sequence[int] | Sequence[bool]
    ) -> tuple[list[float], Sequence[Quality]] | None:
        """(values, qualities) of every field in order, as :meth:`decode` gives them; None
        when this read cannot take the fast path (no single unpack, or a value not finite)."""
        if self.block is None or self.words is None:
            return None
        raws = self.block.unpack_from(self.words.pack(*words))
        values: list[float] = list(map(float, raws)) if self.ints else list(raws)
        for i, scale, offset in self.scaled:
            values[i] = values[i] * scale + offset
        # One sum instead of a test per value: NaN or infinity anywhere makes it non-finite
        # (and so may an overflowing sum of huge values; then each value is looked at).
        if not math.isfinite(sum(values)) and not all(map(math.isfinite, values)):
            return None
        if not self.checked:
            return values, self.good
        qualities = list(self.good)
        for i in self.checked:
            qualities[i] = quality_of(self.fields[i].register, raws[i])
        return values, qualities


def _block_format(fields: Sequence[_Field]) -> struct.Struct | None:
    """One struct unpacking every field from the read's bytes, or None if there is none
    (a field without a direct unpack, fields in both byte orders, overlapping fields)."""
    if not fields or any(f.value is None for f in fields):
        return None
    orders = {f.value.format[0] for f in fields if f.value is not None}
    if len(orders) != 1:
        return None
    parts: list[str] = [orders.pop()]
    pos = 0
    for f in fields:
        assert f.value is not None
        start = 2 * f.offset
        if start < pos or f.value.size != 2 * f.register.count:
            return None
        if start > pos:
            parts.append(f"{start - pos}x")
        parts.append(f.value.format[1:])
        pos = start + f.value.size
    return struct.Struct("".join(parts))


def block_decoder(registers: Sequence[tuple[Register, int]], count: int) -> BlockDecoder:
    """A :class:`BlockDecoder` for a register read of ``count`` words carrying ``registers``."""
    fields: list[_Field] = []
    for reg, offset in registers:
        value = None
        fmt = _VALUE_FORMATS.get(reg.type)
        if fmt is not None:
            big = reg.word_order == "ABCD" or (reg.count == 1 and reg.word_order == "CDAB")
            little = reg.word_order == "DCBA" or (reg.count == 1 and reg.word_order == "BADC")
            if big or little:
                value = struct.Struct(("<" if little else ">") + fmt)
        plain = reg.enum is not None or (reg.scale == 1 and reg.offset == 0)
        checked = (
            reg.nan_value is not None
            or reg.min is not None
            or reg.max is not None
            or reg.enum is not None
        )
        fields.append(_Field(reg, offset, value, plain, checked))
    packed = any(f.value is not None for f in fields)
    return BlockDecoder(
        struct.Struct(f">{count}H") if packed else None,
        tuple(fields),
        metrics=tuple(f.register.metric for f in fields),
        units=tuple(f.register.unit for f in fields),
        block=_block_format(fields),
        scaled=tuple(
            (i, f.register.scale, f.register.offset) for i, f in enumerate(fields) if not f.plain
        ),
        checked=tuple(i for i, f in enumerate(fields) if f.checked),
        ints=any(f.register.type not in _FLOAT_TYPES for f in fields),
        good=(Quality.GOOD,) * len(fields),
        counters=tuple(i for i, f in enumerate(fields) if f.register.counter),
    )
