"""Deterministic noise and local-time helpers shared by the behaviour models.

Noise is a pure function of ``(key, index)`` -- a stable hash, not a random stream -- so a
model's instantaneous values depend only on the seed and the instant, never on how often it
was sampled. Python's ``hash()`` is salted per process, hence splitmix64 (cheap, well distributed,
identical on every platform).
"""

from __future__ import annotations

import hashlib
import math
from datetime import datetime
from zoneinfo import ZoneInfo

__all__ = ["LocalClock", "key_of", "signed", "smooth", "smooth3", "unit"]

_MASK = (1 << 64) - 1
_TO_UNIT = 1.0 / float(1 << 53)
_GAMMA = 0x9E3779B97F4A7C15
_TO_17 = 1.0 / float(1 << 17)


def key_of(seed: int, *parts: str) -> int:
    """A 64-bit key for one noise source of one device, stable across processes."""
    text = "|".join((str(seed), *parts)).encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "big")


def unit(key: int, i: int) -> float:
    """Uniform in [0, 1) for integer index ``i``: the i-th output of splitmix64 seeded ``key``."""
    x = (key + i * _GAMMA) & _MASK  # inlined _mix: this is the simulator's hottest function
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK
    return ((x ^ (x >> 31)) >> 11) * _TO_UNIT


def signed(key: int, i: int) -> float:
    """Uniform in [-1, 1) for integer index ``i``."""
    return 2.0 * unit(key, i) - 1.0


def smooth(key: int, t: float, period: float) -> float:
    """Continuous noise in [-1, 1): random knots every ``period`` seconds, linear between."""
    x = t / period
    i = math.floor(x)
    a = unit(key, i)
    return 2.0 * (a + (unit(key, i + 1) - a) * (x - i)) - 1.0


def smooth3(key: int, t: float, period: float) -> tuple[float, float, float]:
    """Three independent :func:`smooth` channels (e.g. one per phase) from one hash per knot."""
    x = t / period
    i = math.floor(x)
    f = x - i
    a = _bits(key, i)
    b = _bits(key, i + 1)
    out = []
    for shift in (0, 17, 34):
        u0 = ((a >> shift) & 0x1FFFF) * _TO_17
        u1 = ((b >> shift) & 0x1FFFF) * _TO_17
        out.append(2.0 * (u0 + (u1 - u0) * f) - 1.0)
    return out[0], out[1], out[2]


def _bits(key: int, i: int) -> int:
    x = (key + i * _GAMMA) & _MASK
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK
    return x ^ (x >> 31)


class LocalClock:
    """Local wall-clock fields of POSIX timestamps in one time zone, with the offset cached.

    Offsets are looked up once per half hour of UTC time, which is exact for every zone whose
    transitions fall on a half hour (all current IANA zones).
    """

    _BUCKET = 1800

    def __init__(self, tz: ZoneInfo) -> None:
        self.tz = tz
        self._offsets: dict[int, int] = {}

    def offset(self, t: float) -> int:
        """Seconds east of UTC at instant ``t``."""
        b = int(t // self._BUCKET)
        off = self._offsets.get(b)
        if off is None:
            delta = datetime.fromtimestamp(b * self._BUCKET, self.tz).utcoffset()
            off = int(delta.total_seconds()) if delta is not None else 0
            if len(self._offsets) > 100_000:
                self._offsets.clear()
            self._offsets[b] = off
        return off

    def local(self, t: float) -> float:
        """Seconds since 1970-01-01 00:00 *local* time: days and hours fall out by division."""
        return t + self.offset(t)

    def fields(self, t: float) -> tuple[int, float, int]:
        """(local day number, local hour as a float, weekday with Monday = 0)."""
        lt = t + self.offset(t)
        day = int(lt // 86400)
        return day, (lt - day * 86400) / 3600.0, (day + 3) % 7  # 1970-01-01 was a Thursday
