"""15-minute counter summaries: what lets InfluxDB answer a month of counter use in a second.

Reports use counters (kWh, m3) on windows that start and end on the 15-minute UTC grid
(15-minute, hourly and daily windows in every time zone in use today). A window's use is the
counter interpolated at its end minus at its start (``store.counters.counter_arrays``), and
interpolating at a grid edge needs only the last sample before it and the first at or after
it. So for a counter that never drops, the first and the last sample of every 15-minute bucket,
plus how many samples the bucket held, give exactly the numbers every raw sample gives: the
same interpolation between the same two samples, the same sample counts, the same touched
windows. InfluxDB 1.6 returns ~230k raw rows/s, so a month of minute samples of 500 meters
(21.6 M rows) took 94 s; the summaries of the same month are 15.5k rows.

Each writer keeps the summaries of the (metric, device, UTC day) it writes and sends them in
the same write request as the raw samples, so a summary never lags the samples it covers. A day
of one series is one point holding a packed string (``encode``/``decode``): the 96 buckets as
numbers would be 1.4 M rows a month for 500 meters, 9 s to read. Several writers (ingest
workers sharing a subscription) each write their own summary of the same day, told apart by the
``part`` tag; a reader merges them (``merge``) and trusts a bucket only if the parts hold
disjoint stretches of time. Anything a summary cannot vouch for is flagged and read raw:

* ``OUT_OF_ORDER``: a sample arrived at or before the last one the writer had for that bucket
  (a replayed batch, a late sample, two parts overlapping) -- the bucket's samples are read raw;
* ``DROP``: the counter went down inside the bucket -- glitch, rollover and reset rules need every
  sample, so that device is read raw for the whole span.
"""

from __future__ import annotations

import base64
import zlib
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import pairwise

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from store.columnar import ReadingBatch
from store.lineprotocol import escape_tag
from store.reading import Quality, Reading, to_us

GRID_US = 900_000_000  # 15 minutes
DAY_US = 86_400_000_000
BUCKETS = DAY_US // GRID_US  # 96 a day
MEASUREMENT = "facmon_counter_15m"
META_MEASUREMENT = "facmon_counter_15m_meta"

OUT_OF_ORDER = 1
DROP = 2

_VERSION = 1
_NONE = np.iinfo(np.int64).min

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
U8 = npt.NDArray[np.uint8]


@dataclass(slots=True)
class DaySummary:
    """The 96 buckets of one (metric, device, UTC day) as one writer saw them."""

    day_us: int  # the day's start, microseconds since the epoch
    n: I64 = field(default_factory=lambda: np.zeros(BUCKETS, np.int64))
    flags: U8 = field(default_factory=lambda: np.zeros(BUCKETS, np.uint8))
    t0: I64 = field(default_factory=lambda: np.full(BUCKETS, _NONE, np.int64))
    v0: F64 = field(default_factory=lambda: np.zeros(BUCKETS))
    t1: I64 = field(default_factory=lambda: np.full(BUCKETS, _NONE, np.int64))
    v1: F64 = field(default_factory=lambda: np.zeros(BUCKETS))

    def copy(self) -> DaySummary:
        return DaySummary(
            self.day_us,
            self.n.copy(),
            self.flags.copy(),
            self.t0.copy(),
            self.v0.copy(),
            self.t1.copy(),
            self.v1.copy(),
        )

    def add(self, t: I64, v: F64) -> None:
        """Samples of this day in time order, as one write brings them.

        A sample is appended to its bucket when it is later than everything the bucket holds.
        The last sample again with the same value is a replay of what is already counted; any
        other sample at or before the bucket's last is flagged: which samples the bucket really
        holds is then for the raw data to say.
        """
        b = (t - self.day_us) // GRID_US
        if len(b) == 0:
            return
        same = t[1:] == t[:-1]
        if bool(same.any()):  # one instant twice: the same sample, or tag sets disagreeing
            self.flags[b[1:][same & (v[1:] != v[:-1])]] |= OUT_OF_ORDER
            keep = np.concatenate(([True], ~same))
            t, v, b = t[keep], v[keep], b[keep]
        drops = np.diff(v) < 0
        for i, j in runs(b):
            k = int(b[i])
            first_t, first_v = int(t[i]), float(v[i])
            if self.n[k] == 0:
                self.t0[k], self.v0[k] = first_t, first_v
                self.n[k] = j - i
            else:
                last_t, last_v = int(self.t1[k]), float(self.v1[k])
                if first_t == last_t and first_v == last_v:  # the last sample, replayed
                    i += 1
                    if i == j:
                        continue
                    first_t, first_v = int(t[i]), float(v[i])
                if first_t <= last_t:
                    self.flags[k] |= OUT_OF_ORDER
                elif first_v < last_v:
                    self.flags[k] |= DROP
                self.n[k] += j - i
            if j - i > 1 and bool(drops[i : j - 1].any()):
                self.flags[k] |= DROP
            self.t1[k], self.v1[k] = int(t[j - 1]), float(v[j - 1])


def encode(s: DaySummary) -> str:
    """The occupied buckets packed, compressed and base64'd: a line-protocol string field.

    Times are offsets within their bucket (they fit 32 bits); each float column is stored
    byte-transposed, which lets zlib find the slowly changing high bytes of a counter.
    """
    idx = np.flatnonzero(s.n > 0)
    base = s.day_us + idx.astype(np.int64) * GRID_US
    parts = [
        np.array([_VERSION, len(idx)], "<u2").tobytes(),
        idx.astype("<u1").tobytes(),
        s.flags[idx].astype("<u1").tobytes(),
        s.n[idx].astype("<u4").tobytes(),
        (s.t0[idx] - base).astype("<u4").tobytes(),
        (s.t1[idx] - base).astype("<u4").tobytes(),
        _shuffle(s.v0[idx]),
        _shuffle(s.v1[idx]),
    ]
    return base64.b64encode(zlib.compress(b"".join(parts), 6)).decode("ascii")


def decode(day_us: int, text: str) -> DaySummary:
    """The summary :func:`encode` packed; ``ValueError`` if it is not one."""
    try:
        raw = zlib.decompress(base64.b64decode(text, validate=True))
    except (ValueError, zlib.error) as e:
        raise ValueError(f"not a counter summary: {e}") from e
    version, k = np.frombuffer(raw[:4], "<u2").tolist() if len(raw) >= 4 else (0, 0)
    if version != _VERSION or len(raw) != 4 + k * (1 + 1 + 4 + 4 + 4 + 8 + 8):
        raise ValueError(f"not a version-{_VERSION} counter summary ({len(raw)} bytes)")
    pos = 4

    def take(dtype: str, size: int) -> npt.NDArray[np.generic]:
        nonlocal pos
        out = np.frombuffer(raw[pos : pos + k * size], dtype)
        pos += k * size
        return out

    idx = take("<u1", 1).astype(np.int64)
    flags = take("<u1", 1)
    n = take("<u4", 4).astype(np.int64)
    t0 = take("<u4", 4).astype(np.int64)
    t1 = take("<u4", 4).astype(np.int64)
    v0 = _unshuffle(raw[pos : pos + 8 * k])
    v1 = _unshuffle(raw[pos + 8 * k : pos + 16 * k])
    s = DaySummary(day_us)
    base = day_us + idx * GRID_US
    s.n[idx], s.flags[idx] = n, flags
    s.t0[idx], s.t1[idx] = base + t0, base + t1
    s.v0[idx], s.v1[idx] = v0, v1
    return s


def _shuffle(v: F64) -> bytes:
    return v.astype("<f8").view(np.uint8).reshape(-1, 8).T.tobytes()


def _unshuffle(b: bytes) -> F64:
    k = len(b) // 8
    return np.frombuffer(b, np.uint8).reshape(8, k).T.copy().view("<f8").reshape(-1)


def merge(parts: Iterable[DaySummary]) -> DaySummary:
    """One summary of a day from the parts several writers wrote.

    Parts are combined bucket by bucket when they hold disjoint stretches of time: the first
    sample of the earliest, the last of the latest, counts added. Overlapping stretches mean
    the same samples may be counted twice (a batch replayed through another writer): flagged.
    """
    parts = list(parts)
    if len(parts) == 1:
        return parts[0]
    out = parts[0].copy()
    for p in parts[1:]:
        for k in np.flatnonzero(p.n > 0).tolist():
            if out.n[k] == 0:
                out.n[k], out.flags[k] = p.n[k], p.flags[k]
                out.t0[k], out.v0[k], out.t1[k], out.v1[k] = p.t0[k], p.v0[k], p.t1[k], p.v1[k]
                continue
            out.flags[k] |= p.flags[k]
            a = (int(out.t0[k]), float(out.v0[k]), int(out.t1[k]), float(out.v1[k]))
            b = (int(p.t0[k]), float(p.v0[k]), int(p.t1[k]), float(p.v1[k]))
            first, second = (a, b) if a[0] <= b[0] else (b, a)
            if first[2] >= second[0]:
                out.flags[k] |= OUT_OF_ORDER
            elif first[3] > second[1]:
                out.flags[k] |= DROP
            out.n[k] += p.n[k]
            out.t0[k], out.v0[k] = first[0], first[1]
            out.t1[k], out.v1[k] = second[2], second[3]
    return out


@dataclass(frozen=True, slots=True)
class Reduced:
    """A device's summarised buckets as sample arrays, and what must be read raw instead."""

    t: I64  # the first and last sample of every trusted bucket (one when they are the same)
    v: F64
    w: I64  # how many raw samples each stands for
    raw_buckets: I64  # starts (us) of buckets whose samples must be read raw
    drop: bool  # the counter went down somewhere: read the device raw throughout


def reduce(days: Mapping[int, DaySummary], start_us: int, end_us: int) -> Reduced:
    """The buckets in ``[start_us, end_us)`` of a device's merged day summaries."""
    ts: list[I64] = []
    vs: list[F64] = []
    ws: list[I64] = []
    raw: list[I64] = []
    drop = False
    for day_us in sorted(days):
        s = days[day_us]
        starts = day_us + np.arange(BUCKETS, dtype=np.int64) * GRID_US
        inside = (starts >= start_us) & (starts < end_us) & (s.n > 0)
        if bool((s.flags[inside] & DROP).any()):
            drop = True
        bad = inside & ((s.flags & OUT_OF_ORDER) != 0)
        raw.append(starts[bad])
        ok = np.flatnonzero(inside & ~bad)
        if len(ok) == 0:
            continue
        two = s.t1[ok] != s.t0[ok]
        # Interleave first and last per bucket; a bucket of one sample gives one point.
        t = np.stack((s.t0[ok], s.t1[ok]), axis=1).reshape(-1)
        v = np.stack((s.v0[ok], s.v1[ok]), axis=1).reshape(-1)
        w = np.stack((s.n[ok] - two, np.ones(len(ok), np.int64)), axis=1).reshape(-1)
        keep = np.stack((np.ones(len(ok), bool), two), axis=1).reshape(-1)
        ts.append(t[keep])
        vs.append(v[keep])
        ws.append(w[keep])
    cat_i = np.concatenate(ts) if ts else np.empty(0, np.int64)
    return Reduced(
        cat_i,
        np.concatenate(vs) if vs else np.empty(0),
        np.concatenate(ws) if ws else np.empty(0, np.int64),
        np.concatenate(raw) if raw else np.empty(0, np.int64),
        drop,
    )


def runs(keys: npt.NDArray[np.generic]) -> list[tuple[int, int]]:
    """``(start, stop)`` of each run of equal neighbours in ``keys`` (sorted by them)."""
    cut = np.flatnonzero(keys[1:] != keys[:-1]) + 1
    edges = [0, *cut.tolist(), len(keys)]
    return [(a, b) for a, b in pairwise(edges) if b > a]


def line(metric: str, device: str, part: str, s: DaySummary) -> str:
    """The line-protocol point of one summary (precision: microseconds)."""
    return (
        f"{MEASUREMENT},device={escape_tag(device)},metric={escape_tag(metric)},"
        f'part={escape_tag(part, "rollup part")} s="{encode(s)}" {s.day_us}'
    )


def after_bucket(t_us: int) -> int:
    """The first grid edge after ``t_us``'s bucket: where summaries start after a sample."""
    return t_us - t_us % GRID_US + GRID_US


def on_grid(*times_us: int) -> bool:
    """Whether every time is a 15-minute UTC grid edge."""
    return all(t % GRID_US == 0 for t in times_us)


Key = tuple[str, str, int]  # (metric, device, day start in us)


def counter_samples(
    readings: Sequence[Reading], metrics: frozenset[str]
) -> dict[tuple[str, str], tuple[I64, F64]]:
    """The usable (non-BAD, finite) samples of ``metrics`` per (metric, device), time-sorted."""
    if isinstance(readings, ReadingBatch):
        table = readings.table
        mask = pc.and_(
            pc.is_in(table["metric"], value_set=pa.array(sorted(metrics), pa.string())),
            pc.less(table["quality"], int(Quality.BAD)),
        )
        sub = table.filter(mask)
        if sub.num_rows == 0:
            return {}
        metric = sub["metric"].to_pylist()
        device = sub["device"].to_pylist()
        t = sub["time"].to_numpy()
        v = sub["value"].to_numpy()
    else:
        rows = [r for r in readings if r.metric in metrics and r.quality < Quality.BAD]
        if not rows:
            return {}
        metric = [r.metric for r in rows]
        device = [r.device for r in rows]
        t = np.fromiter((to_us(r.time) for r in rows), np.int64, len(rows))
        v = np.fromiter((float(r.value) for r in rows), np.float64, len(rows))
    keys = np.array([f"{m}\x00{d}" for m, d in zip(metric, device, strict=True)], dtype=object)
    ok = np.isfinite(v)
    keys, t, v = keys[ok], t[ok], v[ok]
    order = np.lexsort((t, keys))
    keys, t, v = keys[order], t[order], v[order]
    out: dict[tuple[str, str], tuple[I64, F64]] = {}
    for i, j in runs(keys):
        m, d = str(keys[i]).split("\x00", 1)
        out[(m, d)] = (t[i:j], v[i:j])
    return out


class RollupWriter:
    """The summaries one writer (one ``part``) keeps of the counters it writes.

    :meth:`prepare` gives the summaries a batch changes without keeping them; the store sends
    their lines with the batch and calls :meth:`commit` once the server has both, so a failed
    write leaves the summaries as the server has them. ``load`` fetches this part's summaries
    from the server for days that are not in memory but may be there: every day when the part
    was used by an earlier process (``reused``), else the days this writer dropped from memory.
    """

    def __init__(
        self,
        metrics: frozenset[str],
        part: str,
        load: Callable[[set[Key]], dict[Key, DaySummary]] | None = None,
        *,
        reused: bool = False,
        capacity: int = 8192,
    ) -> None:
        self.metrics = metrics
        self.part = part
        self._load = load
        self._reused = reused
        self._capacity = capacity
        self._days: OrderedDict[Key, DaySummary] = OrderedDict()
        self._evicted: set[Key] = set()

    def known(self, key: Key) -> DaySummary | None:
        """The summary the server holds for ``key`` as far as this writer knows."""
        return self._days.get(key)

    def prepare(self, readings: Sequence[Reading]) -> dict[Key, DaySummary]:
        per_key: dict[Key, tuple[I64, F64]] = {}
        for (metric, device), (t, v) in counter_samples(readings, self.metrics).items():
            day = t - t % DAY_US
            for i, j in runs(day):
                per_key[(metric, device, int(day[i]))] = (t[i:j], v[i:j])
        missing = {
            k for k in per_key if k not in self._days and (self._reused or k in self._evicted)
        }
        if missing and self._load is not None:
            for k, s in self._load(missing).items():
                self._remember(k, s)
        pending: dict[Key, DaySummary] = {}
        for key, (t, v) in per_key.items():
            known = self._days.get(key)
            s = known.copy() if known is not None else DaySummary(key[2])
            s.add(t, v)
            pending[key] = s
        return pending

    def lines(self, pending: Mapping[Key, DaySummary]) -> list[str]:
        return [line(m, d, self.part, s) for (m, d, _), s in pending.items()]

    def commit(self, pending: Mapping[Key, DaySummary]) -> None:
        for key, s in pending.items():
            self._remember(key, s)

    def _remember(self, key: Key, s: DaySummary) -> None:
        self._days[key] = s
        self._days.move_to_end(key)
        self._evicted.discard(key)
        while len(self._days) > self._capacity:
            self._evicted.add(self._days.popitem(last=False)[0])
