"""InfluxDB backend: writes line protocol with influxdb-client, reads with InfluxQL.

Works with InfluxDB 1.8+ (``/api/v2/write`` and ``/query``), 2.x (a DBRP mapping makes the bucket
readable with InfluxQL; :func:`init_influx` creates it) and 3.x (both endpoints are part of its
compatibility API).

Data model (see ``store.lineprotocol``): measurement = metric; tags = device, unit and the
reading's tags; fields ``value`` (float) and ``quality`` (int). A point's identity in InfluxDB is
(measurement, tag set, time), so a replayed reading overwrites itself and is stored once.

Writes are synchronous: the ``DurableWriter`` in front of the store batches and retries, so the
client's own batching and retries are off. Errors are mapped for it: content the server refuses
(400, 413, 422) raises :class:`RejectedPointsError`; an unreachable, overloaded or unauthorised
server raises :class:`RetryableStoreError`.
"""

from __future__ import annotations

import base64
import fcntl
import ipaddress
import json
import logging
import re
import secrets
import socket
import time
import urllib.parse
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO, Any

import httpx
import numpy as np
import numpy.typing as npt
import orjson
import urllib3
from influxdb_client.client.influxdb_client import InfluxDBClient
from influxdb_client.client.write_api import SYNCHRONOUS
from influxdb_client.domain.dbrp_create import DBRPCreate as _DBRPCreate
from influxdb_client.domain.write_precision import WritePrecision
from influxdb_client.rest import ApiException
from influxdb_client.service.dbr_ps_service import DBRPsService as _DBRPsService

from config.models import InfluxStorage, SiteConfig
from store.base import (
    Aggregate,
    CounterPoints,
    Point,
    RejectedPointsError,
    RetryableStoreError,
    SeriesArrays,
    Store,
    StoreError,
    StoreStats,
    Windows,
    WindowValue,
)
from store.lineprotocol import LineEncoder, LineProtocolError, escape_tag
from store.reading import Quality, Reading, from_us, to_us
from store.rollups import (
    DAY_US,
    GRID_US,
    MEASUREMENT,
    META_MEASUREMENT,
    OUT_OF_ORDER,
    DaySummary,
    Key,
    RollupWriter,
    after_bucket,
    decode,
    line,
    merge,
    on_grid,
    reduce,
)

_log = logging.getLogger(__name__)
_ONE_US = timedelta(microseconds=1)
_REJECTED_STATUSES = frozenset({400, 413, 422})
_FUNCTIONS: dict[str, str] = {"mean": "mean", "min": "min", "max": "max", "last": "last"}
_QUERY_CHUNK = "10000"
_LONGEST_GET_QUERY = 2000
_MOST_RAW_RUNS = 50  # stretches of one device read raw one by one

Series = dict[str, Any]

# influxdb-client is only partly annotated: its untyped parts are used through Any.
DBRPCreate: Any = _DBRPCreate
DBRPsService: Any = _DBRPsService
_US: Any = WritePrecision.US


# -- InfluxQL quoting -----------------------------------------------------------------------
def _escape(s: str) -> str:
    # InfluxQL's scanner knows exactly these escapes inside quotes: \\ \' \" \n.
    return s.replace("\\", "\\\\").replace("'", "\\'").replace('"', '\\"').replace("\n", "\\n")


def quote_ident(name: str) -> str:
    """An InfluxQL identifier (measurement, tag or field name) in double quotes."""
    return f'"{_escape(name)}"'


def quote_literal(text: str) -> str:
    """An InfluxQL string literal in single quotes."""
    return f"'{_escape(text)}'"


def _time_ns(t: datetime) -> int:
    # A bare integer compared with ``time`` is nanoseconds in InfluxQL.
    return to_us(t) * 1000


def _where(*conditions: str, devices: Sequence[str] | None = None) -> str:
    """`` WHERE a AND b ...`` of the non-empty conditions, plus one on ``device`` if given."""
    parts = [c for c in conditions if c]
    if devices is not None:
        parts.append("(" + " OR ".join(f'"device" = {quote_literal(d)}' for d in devices) + ")")
    return f" WHERE {' AND '.join(parts)}" if parts else ""


_GOOD_ENOUGH = f'"quality" < {int(Quality.BAD)}'  # BAD values are kept for audit, never used


# -- credentials ----------------------------------------------------------------------------
def _credentials(settings: InfluxStorage) -> tuple[str | None, bool]:
    """(secret, is_basic): the API token (2.x/3.x), or ``user:password`` for 1.x HTTP Basic.

    Basic works with every 1.x release (the ``Token user:password`` form needs 1.8) and keeps
    the password out of URLs, which HTTP client loggers print.
    """
    if settings.token is not None:
        return settings.token.get_secret_value(), False
    if settings.username:
        password = settings.password.get_secret_value() if settings.password else ""
        return f"{settings.username}:{password}", True
    return None, False


def _auth_headers(settings: InfluxStorage) -> dict[str, str]:
    secret, basic = _credentials(settings)
    if secret is None:
        return {}
    if basic:
        return {"Authorization": "Basic " + base64.b64encode(secret.encode()).decode()}
    return {"Authorization": f"Token {secret}"}


def is_loopback(url: str) -> bool:
    """Whether ``url`` points at this machine."""
    host = urllib.parse.urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _client(settings: InfluxStorage, compress: bool | None = None) -> Any:
    secret, basic = _credentials(settings)
    client: Any = InfluxDBClient
    return client(
        url=settings.url,
        token=secret,
        auth_basic=basic,
        org=settings.org or None,
        enable_gzip=not is_loopback(settings.url) if compress is None else compress,
        timeout=int(settings.timeout.total_seconds() * 1000),
        verify_ssl=settings.verify_ssl,
    )


def _error_text(body: bytes | str | None) -> str:
    """The server's own message from an error body (``error`` in 1.x, ``message`` in 2.x)."""
    if not body:
        return ""
    text = body.decode(errors="replace") if isinstance(body, bytes) else body
    try:
        doc = json.loads(text)
    except ValueError:
        return text.strip()[:500]
    if isinstance(doc, dict):
        return str(doc.get("error") or doc.get("message") or doc)[:500]
    return text.strip()[:500]


def _http_error(status: int, reason: str, body: bytes | str | None, what: str) -> StoreError:
    msg = f"InfluxDB {what}: HTTP {status} {reason}".rstrip()
    text = _error_text(body)
    if text:
        msg += f": {text}"
    if status in _REJECTED_STATUSES:
        return RejectedPointsError(msg)
    # 401/403/404 included: a token being rotated or a bucket being created heals by itself,
    # and dropping data because of a setup mistake would be worse than holding it.
    return RetryableStoreError(msg)


class InfluxStore(Store):
    """:class:`Store` on InfluxDB 1.8+/2.x/3.x. Thread-safe: one writer and many readers.

    ``compress`` gzips write bodies; by default on for remote servers (about 10x less traffic on
    a site's uplink) and off for a server on this machine, where influxd spends more time
    inflating a body than it would receiving it (measured: ~90k vs ~130k points/s on 1.6).
    """

    def __init__(
        self,
        settings: InfluxStorage,
        *,
        compress: bool | None = None,
        rollup_metrics: Iterable[str] = (),
        rollup_dir: Path | None = None,
    ) -> None:
        self.settings = settings
        self.stats = StoreStats()
        self._encoder = LineEncoder()
        # Counter summaries (store.rollups) for the counters reports read. ``rollup_dir`` lets a
        # restarted process take over the part an earlier one wrote instead of adding a series
        # per restart; without it every instance writes a part of its own.
        self._rollup_metrics = frozenset(rollup_metrics)
        self._rollups: RollupWriter | None = None
        self._part_lock: IO[str] | None = None
        self._meta: dict[str, float] = {}  # metric -> when its marker was last written
        if self._rollup_metrics:
            part, self._part_lock, reused = claim_part(rollup_dir)
            self._rollups = RollupWriter(
                self._rollup_metrics, part, self._load_rollups, reused=reused
            )
        self._client = _client(settings, compress)
        self._write_api: Any = self._client.write_api(write_options=SYNCHRONOUS)
        self._http = httpx.Client(
            base_url=settings.url.rstrip("/"),
            headers={"Accept": "application/json", **_auth_headers(settings)},
            timeout=settings.timeout.total_seconds(),
            verify=settings.verify_ssl,
        )

    def __repr__(self) -> str:
        return f"InfluxStore(url={self.settings.url!r}, bucket={self.settings.bucket!r})"

    # -- writes -----------------------------------------------------------------------------
    def write(self, readings: Sequence[Reading]) -> None:
        if not readings:
            return
        try:
            body = self._encoder.payload(readings)
        except LineProtocolError as e:
            raise RejectedPointsError(str(e)) from e
        pending: dict[Key, DaySummary] = {}
        markers: dict[str, str] = {}
        if self._rollups is not None:
            pending = self._rollups.prepare(readings)
            if pending:
                # In the same request as the samples: a summary never lags what it covers.
                markers = self._meta_lines({k[0] for k in pending})
                extra = list(markers.values()) + self._rollups.lines(pending)
                body += ("\n" + "\n".join(extra)).encode()
        try:
            self._post(body)
        except RejectedPointsError:
            if pending:
                self._restore_summaries(pending)
            raise
        if self._rollups is not None and pending:
            self._rollups.commit(pending)
            now = time.monotonic()
            for metric in markers:
                self._meta[metric] = now
        self.stats.written += len(readings)
        self.stats.write_calls += 1

    # -- counter summaries (store.rollups) --------------------------------------------------
    def _restore_summaries(self, pending: dict[Key, DaySummary]) -> None:
        """Undo summaries a refused batch may have left behind.

        InfluxDB 1.x stores the lines of a batch it can and refuses the rest (a field type
        conflict): the summaries may then count samples that were never stored. They are put
        back as this writer knew them, or, where it knew nothing, marked for raw reads.
        """
        assert self._rollups is not None
        undo = {k: self._rollups.known(k) or _unusable(k[2]) for k in pending}
        try:
            self._write_lines(self._rollups.lines(undo))
        except StoreError as e:
            _log.warning("could not put back counter summaries after a refused batch: %s", e)

    def _meta_lines(self, metrics: set[str]) -> dict[str, str]:
        """The marker that says from when a metric's summaries are complete.

        Written with a metric's first summaries: from the beginning of time on a fresh
        database, else from the first bucket after the newest sample already stored (written
        by a version of facmon without summaries, which readers must read raw). Rewritten
        daily so that a bucket's retention never drops it.
        """
        lines: dict[str, str] = {}
        stale = [m for m in sorted(metrics) if time.monotonic() - self._meta.get(m, -1e18) > 86400]
        if not stale:
            return lines
        known = self._complete_from(stale)
        newest = self._newest(sorted(m for m in stale if m not in known))
        for m in stale:
            if m in known:
                cf = known[m]
            elif m in newest:
                cf = after_bucket(newest[m])
            else:
                cf = 0
            lines[m] = self._marker(m, cf)
        return lines

    def _complete_from(self, metrics: Sequence[str]) -> dict[str, int]:
        if not metrics:
            return {}
        q = (
            f'SELECT last("complete_from") FROM {quote_ident(META_MEASUREMENT)}'
            + _where("(" + " OR ".join(f'"metric" = {quote_literal(m)}' for m in metrics) + ")")
            + ' GROUP BY "metric"'
        )
        return {
            s["tags"].get("metric", ""): int(row[1])
            for s in self.query(q)
            for row in s["values"]
            if row[1] is not None
        }

    def _newest(self, metrics: Sequence[str]) -> dict[str, int]:
        if not metrics:
            return {}
        q = "; ".join(f'SELECT last("value") FROM {quote_ident(m)}' for m in metrics)
        out: dict[str, int] = {}
        for s in self.query(q):
            for row in s["values"]:
                out[s["name"]] = max(out.get(s["name"], 0), int(row[0]))
        return out

    def _load_rollups(self, keys: set[Key]) -> dict[Key, DaySummary]:
        """This part's stored summaries of ``keys`` (the part was used by an earlier process)."""
        assert self._rollups is not None
        days = [k[2] for k in keys]
        q = (
            f'SELECT "s" FROM {quote_ident(MEASUREMENT)}'
            + _where(
                f'"part" = {quote_literal(self._rollups.part)}',
                f"time >= {min(days) * 1000}",
                f"time <= {max(days) * 1000}",
                "("
                + " OR ".join(f'"metric" = {quote_literal(m)}' for m in {k[0] for k in keys})
                + ")",
                devices=sorted({k[1] for k in keys}),
            )
            + ' GROUP BY "device", "metric"'
        )
        out: dict[Key, DaySummary] = {}
        for s in self.query(q):
            for t, text in s["values"]:
                key = (s["tags"].get("metric", ""), s["tags"].get("device", ""), int(t))
                if key in keys and text is not None:
                    try:
                        out[key] = decode(key[2], text)
                    except ValueError:
                        out[key] = _unusable(key[2])
        return out

    def summarise_history(
        self, metric: str, progress: Callable[[int, int], None] | None = None
    ) -> tuple[int, datetime | None]:
        """Counter summaries for the samples of ``metric`` stored before summaries existed
        (by a facmon without them): reports then read those months as fast as new ones.

        Reads the raw samples a UTC day at a time, writes each day's summaries under one part
        per machine (running it again overwrites them: idempotent) and, once every day is
        done, moves the marker back to the first sample. Interrupted, it changes nothing that
        reports read. ``progress(done, total)`` is called after each day. Returns the number of
        days summarised and the new start of the summaries (None: nothing to do).
        """
        known = self._complete_from([metric])
        if metric in known:
            until = known[metric]
        else:  # nothing summarised yet: mark from where writers will take over
            newest = self._newest([metric])
            if metric not in newest:
                return 0, None
            until = after_bucket(newest[metric])
        first = self._oldest(metric)
        if first is None or first >= until:
            if metric not in known:
                self._write_lines([self._marker(metric, until)])
            return 0, None
        part = f"{_host()}-history"
        days = list(range(first - first % DAY_US, until, DAY_US))
        for i, day in enumerate(days):
            lines: list[str] = []
            arrays = self.series_arrays(metric, from_us(day), from_us(min(day + DAY_US, until)))
            for device, (t, v) in arrays.items():
                summary = DaySummary(day)
                summary.add(t, v)
                lines.append(line(metric, device, part, summary))
            for k in range(0, len(lines), 5000):
                self._write_lines(lines[k : k + 5000])
            if progress is not None:
                progress(i + 1, len(days))
        start = first - first % GRID_US
        self._write_lines([self._marker(metric, start)])
        return len(days), from_us(start)

    def _oldest(self, metric: str) -> int | None:
        rows = [
            row
            for s in self.query(f'SELECT first("value") FROM {quote_ident(metric)}')
            for row in s["values"]
        ]
        return min((int(r[0]) for r in rows), default=None)

    @staticmethod
    def _marker(metric: str, complete_from: int) -> str:
        now_us = time.time_ns() // 1000
        return (
            f"{META_MEASUREMENT},metric={escape_tag(metric)} complete_from={complete_from}i "
            f"{now_us}"
        )

    def _write_lines(self, lines: list[str]) -> None:
        if lines:
            self._post("\n".join(lines).encode())

    def _post(self, body: bytes) -> None:
        """One write request; errors mapped to retryable or rejected."""
        try:
            self._write_api.write(
                bucket=self.settings.bucket,
                org=self.settings.org,
                record=body,  # one pre-joined payload: the client would re-encode a list
                write_precision=_US,
            )
        except ApiException as e:
            raise _http_error(e.status or 0, e.reason or "", e.body, "write") from None
        except (urllib3.exceptions.HTTPError, OSError) as e:
            raise RetryableStoreError(f"InfluxDB write to {self.settings.url} failed: {e}") from e

    def counter_points(
        self,
        metric: str,
        start: datetime,
        end: datetime,
        devices: Sequence[str] | None = None,
    ) -> dict[str, CounterPoints]:
        """From the counter summaries where they can vouch for the samples, raw elsewhere.

        Raw: before the metric's summaries are complete, buckets flagged out of order, and
        every sample of a device whose counter drops anywhere in the span.
        """
        start_us, end_us = to_us(start), to_us(end)
        if metric not in self._rollup_metrics or not on_grid(start_us, end_us):
            return super().counter_points(metric, start, end, devices)
        if devices is not None and not devices:
            return {}
        known = self._complete_from([metric])
        if metric not in known:
            return super().counter_points(metric, start, end, devices)
        cf = max(start_us, min(end_us, known[metric]))
        q = (
            f'SELECT "s" FROM {quote_ident(MEASUREMENT)}'
            + _where(
                f'"metric" = {quote_literal(metric)}',
                f"time >= {(cf - cf % DAY_US) * 1000}",
                f"time < {end_us * 1000}",
                devices=devices,
            )
            + ' GROUP BY "device", "part"'
        )
        parts: dict[str, dict[int, list[DaySummary]]] = {}
        broken: set[str] = set()
        for s in self.query(q):
            device = s["tags"].get("device", "")
            for t, text in s["values"]:
                if text is None:
                    continue
                try:
                    parts.setdefault(device, {}).setdefault(int(t), []).append(decode(int(t), text))
                except ValueError:
                    broken.add(device)
        reduced = {
            d: reduce({day: merge(ps) for day, ps in days.items()}, cf, end_us)
            for d, days in parts.items()
        }
        # What only the raw samples can answer: (device or None for all, start, end) spans.
        spans: list[tuple[Sequence[str] | None, int, int]] = []
        if start_us < cf:
            spans.append((devices, start_us, cf))
        runs = {d: _runs(r.raw_buckets) for d, r in reduced.items()}
        # Beyond a few stretches one query for all of the device beats one per stretch.
        broken |= {d for d, r in reduced.items() if r.drop or len(runs[d]) > _MOST_RAW_RUNS}
        if broken:
            spans.append((sorted(broken), cf, end_us))
        for d, device_runs in runs.items():
            if d not in broken:
                spans.extend(([d], a, b) for a, b in device_runs)
        raw = self._raw_spans(metric, spans)
        out: dict[str, CounterPoints] = {}
        again: list[str] = []
        for d in sorted(set(reduced) | set(raw)):
            red = reduced.get(d)
            if red is None or d in broken:
                if d in raw:
                    out[d] = (*raw[d], None)
                continue
            t, v, w = red.t, red.v, red.w
            if d in raw:
                rt, rv = raw[d]
                t = np.concatenate((rt, t))
                v = np.concatenate((rv, v))
                w = np.concatenate((np.ones(len(rt), np.int64), w))
                order = np.argsort(t, kind="stable")
                t, v, w = t[order], v[order], w[order]
            if len(v) > 1 and not bool((np.diff(v) >= 0).all()):
                again.append(d)  # drops between buckets: the counter rules need every sample
            elif len(t):
                out[d] = (t, v, w)
        if again:
            for d, (t, v) in self.series_arrays(metric, start, end, again).items():
                out[d] = (t, v, None)
        return dict(sorted(out.items()))

    def _raw_spans(
        self, metric: str, spans: Sequence[tuple[Sequence[str] | None, int, int]]
    ) -> dict[str, SeriesArrays]:
        """Raw samples of several (devices, start, end) spans, one request, merged per device."""
        if not spans:
            return {}
        q = "; ".join(
            self._series_query(metric, from_us(a), from_us(b), devs) for devs, a, b in spans
        )
        pieces: dict[str, list[SeriesArrays]] = {}
        for s in self.query(q):
            got = _rows_to_arrays(s["values"])
            if got is not None:
                pieces.setdefault(s["tags"].get("device", ""), []).append(got)
        out: dict[str, SeriesArrays] = {}
        for d, ps in pieces.items():
            t = np.concatenate([p[0] for p in ps])
            v = np.concatenate([p[1] for p in ps])
            order = np.argsort(t, kind="stable")
            out[d] = (t[order], v[order])
        return out

    # -- queries ----------------------------------------------------------------------------
    def query(self, q: str) -> list[Series]:
        """Run InfluxQL on the store's database; the series of all statements, chunks merged.

        Raises :class:`RetryableStoreError` when the server cannot answer and
        :class:`StoreError` for an error in the query.
        """
        params = {
            "db": self.settings.bucket,
            "q": q,
            "epoch": "u",
            # Chunked answers are never cut short by the server's max-row-limit.
            "chunked": "true",
            "chunk_size": _QUERY_CHUNK,
        }
        try:
            if len(q) <= _LONGEST_GET_QUERY:
                resp = self._http.get("/query", params=params)
            else:  # a long device list: proxies refuse URLs of more than a few kB
                resp = self._http.post("/query", data=params)
        except httpx.HTTPError as e:
            raise RetryableStoreError(f"InfluxDB query to {self.settings.url} failed: {e}") from e
        if resp.status_code != 200:
            err = _http_error(resp.status_code, resp.reason_phrase, resp.content, "query")
            if isinstance(err, RejectedPointsError):  # a query has no points to reject
                err = StoreError(f"{err} (query: {q})")
            raise err
        merged: dict[tuple[Any, ...], Series] = {}
        for doc in _json_documents(resp.text):
            if "error" in doc:
                raise StoreError(f"InfluxDB query failed: {doc['error']} (query: {q})")
            for result in doc.get("results") or ():
                if "error" in result:
                    raise StoreError(f"InfluxDB query failed: {result['error']} (query: {q})")
                for s in result.get("series") or ():
                    tags = s.get("tags") or {}
                    key = (result.get("statement_id"), s.get("name"), tuple(sorted(tags.items())))
                    if key in merged:
                        merged[key]["values"].extend(s.get("values") or ())
                    else:
                        merged[key] = {
                            "name": s.get("name", ""),
                            "tags": tags,
                            "columns": s.get("columns") or [],
                            "values": list(s.get("values") or ()),
                        }
        return list(merged.values())

    def aggregate(
        self,
        metric: str,
        windows: Windows,
        fn: Aggregate,
        devices: Sequence[str] | None = None,
    ) -> list[WindowValue]:
        if fn not in _FUNCTIONS:
            raise ValueError(f"unknown aggregate {fn!r}; use one of {', '.join(_FUNCTIONS)}")
        if devices is not None and not devices:
            return []
        every_us = windows.every // _ONE_US  # >= 1: timedelta has microsecond resolution
        start_us = to_us(windows.start)
        # The offset aligns InfluxQL's epoch-based buckets on windows.start; ``time < end``
        # clips the last bucket to windows.end, so a short last window needs no query of its own.
        q = (
            f'SELECT {_FUNCTIONS[fn]}("value") FROM {quote_ident(metric)}'
            + _where(
                f"time >= {start_us * 1000}",
                f"time < {_time_ns(windows.end)}",
                _GOOD_ENOUGH,
                devices=devices,
            )
            + f' GROUP BY time({every_us}u, {start_us % every_us}u), "device" fill(none)'
        )
        out: list[WindowValue] = []
        for s in self.query(q):
            device = s["tags"].get("device", "")
            for t, v in s["values"]:
                if v is not None:
                    out.append(WindowValue(device=device, start=from_us(t), value=float(v)))
        out.sort(key=lambda w: (w.device, w.start))
        return out

    def latest(
        self,
        devices: Sequence[str] | None = None,
        metrics: Sequence[str] | None = None,
        since: datetime | None = None,
    ) -> list[Reading]:
        if (devices is not None and not devices) or (metrics is not None and not metrics):
            return []
        source = ", ".join(quote_ident(m) for m in metrics) if metrics is not None else "/.*/"
        clause = _where(f"time >= {_time_ns(since)}" if since else "", devices=devices)
        # A lone selector returns the other fields of the same point: the quality of the
        # latest value. GROUP BY * gives one series per tag set, so unit and tags come back.
        q = f'SELECT last("value") AS "value", "quality" FROM {source}{clause} GROUP BY *'
        best: dict[tuple[str, str], Reading] = {}
        for s in self.query(q):
            tags: dict[str, str] = s["tags"]
            device = tags.get("device", "")
            for t, v, quality in s["values"]:
                if v is None:
                    continue
                r = Reading(
                    time=from_us(t),
                    device=device,
                    metric=s["name"],
                    value=float(v),
                    unit=tags.get("unit", ""),
                    quality=Quality(quality) if quality is not None else Quality.GOOD,
                    tags={k: tv for k, tv in tags.items() if tv and k not in ("device", "unit")},
                )
                key = (device, r.metric)
                if key not in best or r.time > best[key].time:
                    best[key] = r
        return [best[k] for k in sorted(best)]

    def _series_query(
        self, metric: str, start: datetime, end: datetime, devices: Sequence[str] | None
    ) -> str:
        return (
            f'SELECT "value" FROM {quote_ident(metric)}'
            + _where(
                f"time >= {_time_ns(start)}",
                f"time < {_time_ns(end)}",
                _GOOD_ENOUGH,
                devices=devices,
            )
            + ' GROUP BY "device"'
        )

    def series(
        self,
        metric: str,
        start: datetime,
        end: datetime,
        devices: Sequence[str] | None = None,
    ) -> dict[str, list[Point]]:
        if devices is not None and not devices:
            return {}
        out: dict[str, list[Point]] = {}
        for s in self.query(self._series_query(metric, start, end, devices)):
            pts = out.setdefault(s["tags"].get("device", ""), [])
            for t, v in s["values"]:
                if v is None:
                    continue
                p = (from_us(t), float(v))
                # Two tag sets at one instant (tags changed between replays) are one sample.
                if pts and pts[-1][0] == p[0]:
                    pts[-1] = p
                else:
                    pts.append(p)
        return {d: pts for d, pts in sorted(out.items()) if pts}

    def series_arrays(
        self,
        metric: str,
        start: datetime,
        end: datetime,
        devices: Sequence[str] | None = None,
    ) -> dict[str, SeriesArrays]:
        """:meth:`series` built as arrays straight from the answer's rows.

        What a monthly report reads (a month of minute samples per meter): the default builds
        a datetime per sample and converts it back, 1.6 s of a 20-meter month (950k samples).
        """
        if devices is not None and not devices:
            return {}
        out: dict[str, SeriesArrays] = {}
        for s in self.query(self._series_query(metric, start, end, devices)):
            got = _rows_to_arrays(s["values"])
            if got is not None:
                out[s["tags"].get("device", "")] = got
        return dict(sorted(out.items()))

    def last_before(
        self, metric: str, t: datetime, devices: Sequence[str] | None = None
    ) -> dict[str, Point]:
        if devices is not None and not devices:
            return {}
        q = (
            f'SELECT last("value") FROM {quote_ident(metric)}'
            + _where(f"time < {_time_ns(t)}", _GOOD_ENOUGH, devices=devices)
            + ' GROUP BY "device"'
        )
        out: dict[str, Point] = {}
        for s in self.query(q):
            for ts, v in s["values"]:
                if v is not None:
                    out[s["tags"].get("device", "")] = (from_us(ts), float(v))
        return dict(sorted(out.items()))

    def close(self) -> None:
        self._write_api.close()
        self._client.close()
        self._http.close()
        if self._part_lock is not None:
            self._part_lock.close()  # the part is free for the next process
            self._part_lock = None


def open_influx(config: SiteConfig) -> InfluxStore:
    """The site's InfluxDB store as every facmon process opens it: with the report counters'
    summaries, and a writer part taken over from an earlier process on this machine."""
    settings = config.storage.influxdb
    if settings is None:
        raise ValueError("storage.influxdb is not configured")
    return InfluxStore(
        settings,
        rollup_metrics=config.report_counters if settings.counter_summaries else (),
        rollup_dir=config.rollup_dir,
    )


def _rows_to_arrays(rows: list[list[Any]]) -> SeriesArrays | None:
    """``[time, value]`` rows of one device as arrays, as ``series`` reads them; None if empty."""
    if not rows:
        return None
    t = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    # A row without a value (a point carrying only other fields) is None, here NaN: stored
    # values are finite, so NaN means exactly the rows ``series`` skips.
    v = np.array([r[1] for r in rows], dtype=np.float64)
    keep = ~np.isnan(v)
    t, v = t[keep], v[keep]
    # As in ``series``: of several tag sets at one instant the last row is the sample.
    last_of_instant = np.append(t[1:] != t[:-1], True) if len(t) else keep[:0]
    t, v = t[last_of_instant], v[last_of_instant]
    return (t, v) if len(t) else None


def _runs(bucket_starts: npt.NDArray[np.int64]) -> list[tuple[int, int]]:
    """Consecutive 15-minute buckets joined into ``(start, end)`` spans."""
    out: list[tuple[int, int]] = []
    for b in np.sort(bucket_starts).tolist():
        if out and out[-1][1] == b:
            out[-1] = (out[-1][0], b + GRID_US)
        else:
            out.append((b, b + GRID_US))
    return out


def _unusable(day_us: int) -> DaySummary:
    """A summary that could not be read: every bucket is to be read raw."""
    s = DaySummary(day_us)
    s.n[:] = 1
    s.flags[:] = OUT_OF_ORDER
    return s


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", socket.gethostname())[:40] or "host"


def claim_part(directory: Path | None) -> tuple[str, IO[str] | None, bool]:
    """A ``part`` name for this writer's counter summaries: (name, lock, reused).

    With a directory, a part an earlier process on this machine used is taken over when no
    running process holds its lock file, so restarts do not add series; two processes never
    write one part (each would overwrite the other's summaries).
    """
    host = _host()
    if directory is None:
        return f"{host}-{secrets.token_hex(4)}", None, False
    directory.mkdir(parents=True, exist_ok=True)
    for path in sorted(directory.glob("*.part")):
        fh = path.open("a+", encoding="utf-8")
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.close()
            continue
        return path.stem, fh, True
    name = f"{host}-{secrets.token_hex(4)}"
    fh = (directory / f"{name}.part").open("a+", encoding="utf-8")
    fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return name, fh, False


def _json_documents(text: str) -> Iterator[dict[str, Any]]:
    """The JSON objects of a (possibly chunked, newline-separated) ``/query`` answer."""
    # InfluxDB writes each chunk as one line. orjson parses a month of minute samples of 20
    # meters (950k rows) in 1.4 s against 1.75 s with json (benchmarks/reports.py data).
    try:
        docs = [orjson.loads(line) for line in text.split("\n") if line.strip()]
    except orjson.JSONDecodeError:
        docs = None  # not one document a line (pretty-printed by a proxy?): parse it as a stream
    if docs is not None:
        yield from (doc for doc in docs if isinstance(doc, dict))
        return
    decoder = json.JSONDecoder()
    i, n = 0, len(text)
    while i < n:
        while i < n and text[i].isspace():
            i += 1
        if i >= n:
            break
        try:
            doc, i = decoder.raw_decode(text, i)
        except ValueError as e:
            raise StoreError(f"InfluxDB sent an unreadable answer: {text[:200]!r}") from e
        if isinstance(doc, dict):
            yield doc


# -- preparing the target -------------------------------------------------------------------
def _major_version(version: str) -> int:
    digits = version.strip().lstrip("vV")
    head = digits.split(".", 1)[0]
    if not head.isdigit():
        raise StoreError(f"cannot tell the InfluxDB version from {version!r}")
    return int(head)


def init_influx(settings: InfluxStorage) -> str:
    """Make the database or bucket ready for facmon; idempotent. Returns what it did.

    * 1.x: ``CREATE DATABASE`` (needs an admin user when auth is on);
    * 2.x: the bucket in ``org`` if missing, and a DBRP mapping (database = bucket, retention
      policy ``autogen``, default) if missing, so InfluxQL reads find the bucket;
    * 3.x: nothing; a database is created by its first write.

    Raises :class:`RetryableStoreError` when the server is unreachable and :class:`StoreError`
    when it refuses.
    """
    with httpx.Client(
        base_url=settings.url.rstrip("/"),
        headers=_auth_headers(settings),
        timeout=settings.timeout.total_seconds(),
        verify=settings.verify_ssl,
    ) as http:
        try:
            ping = http.get("/ping")
        except httpx.HTTPError as e:
            raise RetryableStoreError(f"InfluxDB at {settings.url} is unreachable: {e}") from e
        version = ping.headers.get("X-Influxdb-Version", "")
        if not version:
            raise StoreError(
                f"{settings.url}/ping answered HTTP {ping.status_code} without an "
                "X-Influxdb-Version header: is this InfluxDB?"
            )
        major = _major_version(version)
        where = f"InfluxDB {version} at {settings.url}"
        if major == 1:
            return f"{where}: {_init_v1(http, settings.bucket)}"
    if major == 2:
        return f"{where}: {_init_v2(settings)}"
    return f"{where}: nothing to prepare (database {settings.bucket!r} is created on first write)"


def _init_v1(http: httpx.Client, db: str) -> str:
    def run(q: str) -> list[dict[str, Any]]:
        try:
            resp = http.post("/query", data={"q": q})
        except httpx.HTTPError as e:
            raise RetryableStoreError(f"InfluxDB query failed: {e}") from e
        if resp.status_code != 200:
            raise _setup_error(resp.status_code, resp.reason_phrase, resp.content, q)
        results: list[dict[str, Any]] = resp.json().get("results") or []
        for r in results:
            if "error" in r:
                raise StoreError(f"{q}: {r['error']}")
        return results

    existing = {
        row[0]
        for result in run("SHOW DATABASES")
        for s in result.get("series") or ()
        for row in s.get("values") or ()
    }
    if db in existing:
        return f"database {db!r} already exists"
    run(f"CREATE DATABASE {quote_ident(db)}")
    return f"database {db!r} created"


def _setup_error(status: int, reason: str, body: bytes | str | None, what: str) -> StoreError:
    err = _http_error(status, reason, body, what)
    # A refused setup request has no points to drop: it is a plain (non-retryable) error.
    return err if err.retryable else StoreError(str(err))


def _init_v2(settings: InfluxStorage) -> str:
    if not settings.org:
        raise StoreError("InfluxDB 2.x needs 'org' in the influxdb settings")
    name = settings.bucket
    with _client(settings) as client:
        try:
            buckets = client.buckets_api()
            found = buckets.find_buckets(name=name, org=settings.org).buckets or []
            if found:
                bucket, did_bucket = found[0], f"bucket {name!r} already exists"
            else:
                bucket = buckets.create_bucket(bucket_name=name, org=settings.org)
                did_bucket = f"bucket {name!r} created"
            dbrps = DBRPsService(client.api_client)
            if dbrps.get_dbr_ps(org_id=bucket.org_id, bucket_id=bucket.id, db=name).content:
                did_mapping = f"InfluxQL mapping {name}/autogen already exists"
            else:
                dbrps.post_dbrp(
                    DBRPCreate(
                        org_id=bucket.org_id,
                        bucket_id=bucket.id,
                        database=name,
                        retention_policy="autogen",
                        default=True,
                    )
                )
                did_mapping = f"InfluxQL mapping {name}/autogen created"
        except ApiException as e:
            raise _setup_error(e.status or 0, e.reason or "", e.body, "setup") from None
        except (urllib3.exceptions.HTTPError, OSError) as e:
            raise RetryableStoreError(f"InfluxDB at {settings.url} failed: {e}") from e
    return f"{did_bucket}; {did_mapping}"
