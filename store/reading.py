"""The one record a sample travels in, from the device to the people reading reports."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import IntEnum
from types import MappingProxyType

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_US = timedelta(microseconds=1)
_ZERO = timedelta(0)
_EMPTY_TAGS: Mapping[str, str] = MappingProxyType({})


class Quality(IntEnum):
    """How far a value can be trusted; stored next to the value so reports can exclude or flag it.

    Integer-valued so it stores as a small int in every backend and orders from best to worst.
    """

    GOOD = 0
    UNCERTAIN = 1  # e.g. a counter read that looks like a glitch, a value from a stale cache
    BAD = 2  # out of bounds, sentinel value, decode failure: kept for audit, never aggregated


@dataclass(frozen=True, slots=True)
class Reading:
    """One sample of one metric of one device.

    ``time`` must be timezone-aware; it is normalised to UTC so equal instants compare equal and
    replays of the same sample carry the same identity ``(device, metric, time)`` in every store.
    ``tags`` carries location (site, building, floor, tenant) and anything else the site config
    attaches; stores index it but it is not part of the identity.
    """

    time: datetime
    device: str
    metric: str
    value: float
    unit: str = ""
    quality: Quality = Quality.GOOD
    tags: Mapping[str, str] = field(default_factory=lambda: _EMPTY_TAGS, hash=False)

    def __post_init__(self) -> None:
        t = self.time
        tz = t.tzinfo
        if tz is UTC:  # what collectors pass: nothing to check or convert
            return
        if tz is None:
            raise ValueError(f"Reading.time must be timezone-aware (device {self.device!r})")
        if t.utcoffset() != _ZERO:
            object.__setattr__(self, "time", t.astimezone(UTC))

    @property
    def time_us(self) -> int:
        """Microseconds since the Unix epoch: the precision every backend stores."""
        return (self.time - EPOCH) // _ONE_US

    @property
    def key(self) -> tuple[str, str, datetime]:
        """Identity of the sample: writing the same key twice must store it once."""
        return (self.device, self.metric, self.time)


def from_us(us: int) -> datetime:
    """Inverse of :attr:`Reading.time_us`."""
    return EPOCH + timedelta(microseconds=us)


def to_us(t: datetime) -> int:
    """Microseconds since the epoch for an aware datetime (naive datetimes are rejected)."""
    if t.tzinfo is None:
        raise ValueError("naive datetime: pass a timezone-aware time")
    return (t - EPOCH) // _ONE_US
