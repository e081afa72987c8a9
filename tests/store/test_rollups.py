"""Counter summaries (store.rollups): InfluxDB answers counter use from them with the numbers
every raw sample gives.

The summaries are checked two ways: as data (packing, appending, merging parts), and on a real
influxd, where a store with summaries and one reading only raw samples share a database and
must give identical counter windows for meters that misbehave in every way the summaries have
to notice: replayed and late batches, glitches, two writers, samples before summaries existed.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import numpy as np
import pytest

from config.models import InfluxStorage
from store.base import RejectedPointsError, Windows
from store.columnar import ReadingBatch
from store.counters import CounterArrays
from store.influx import InfluxStore, init_influx
from store.reading import Quality, Reading, to_us
from store.rollups import (
    BUCKETS,
    DAY_US,
    DROP,
    GRID_US,
    MEASUREMENT,
    OUT_OF_ORDER,
    DaySummary,
    RollupWriter,
    decode,
    encode,
    merge,
)
from tests.fixtures.influxd import ROLLUP_METRICS, InfluxServer

StoreFactory = Callable[[], InfluxStore]
DAY0 = datetime(2024, 3, 1, tzinfo=UTC)
D0 = to_us(DAY0)
MIN_US = 60_000_000
METRIC = "energy_kwh"
assert METRIC in ROLLUP_METRICS


def arr(*xs: float) -> np.ndarray:
    return np.array(xs, dtype=np.float64)


def times(*minutes: float) -> np.ndarray:
    return np.array([D0 + int(m * MIN_US) for m in minutes], dtype=np.int64)


# -- the summary as data ---------------------------------------------------------------------
def test_a_summary_survives_packing_into_its_text() -> None:
    rng = np.random.default_rng(5)
    s = DaySummary(D0)
    t = np.sort(rng.choice(np.arange(0, DAY_US, 1_000_000), 500, replace=False)) + D0
    s.add(t, np.cumsum(rng.random(500)) + 1e6)
    s.flags[7] |= OUT_OF_ORDER
    text = encode(s)
    back = decode(D0, text)
    for name in ("n", "flags", "t0", "v0", "t1", "v1"):
        got, want = getattr(back, name), getattr(s, name)
        occupied = s.n > 0
        assert np.array_equal(got[occupied], want[occupied]), name
    assert int(back.n.sum()) == 500
    assert len(text) < 4000  # a day is one line-protocol string field (limit 64 KiB)
    with pytest.raises(ValueError, match="not a"):
        decode(D0, "aGVsbG8=")


def test_samples_append_in_order_and_what_a_summary_cannot_vouch_for_is_flagged() -> None:
    s = DaySummary(D0)
    s.add(times(0, 1, 2, 16), arr(10, 11, 12, 20))
    assert (s.n[0], s.t0[0], s.v0[0], s.t1[0], s.v1[0]) == (3, D0, 10.0, D0 + 2 * MIN_US, 12.0)
    assert s.n[1] == 1 and s.flags.sum() == 0

    s.add(times(2, 3), arr(12, 13))  # the last sample again (a replay) adds nothing
    assert (s.n[0], s.v1[0], s.flags[0]) == (4, 13.0, 0)

    s.add(times(1), arr(11))  # an earlier sample: which samples the bucket holds is unknown
    assert s.flags[0] == OUT_OF_ORDER

    s.add(times(17, 18), arr(19, 21))  # the counter went down inside the bucket
    assert s.flags[1] == DROP

    s.add(times(31, 31), arr(30, 31))  # one instant, two values (tag sets disagree)
    assert s.flags[2] == OUT_OF_ORDER


def test_parts_of_disjoint_stretches_merge_and_overlapping_parts_are_flagged() -> None:
    a, b = DaySummary(D0), DaySummary(D0)
    a.add(times(0, 1, 2), arr(1, 2, 3))
    b.add(times(5, 6, 20), arr(4, 5, 9))
    m = merge([b, a])
    assert (m.n[0], m.v0[0], m.v1[0], m.flags[0]) == (5, 1.0, 5.0, 0)
    assert (m.n[1], m.v0[1]) == (1, 9.0)

    c = DaySummary(D0)
    c.add(times(1.5), arr(2.5))  # inside a's stretch: could be a sample counted twice
    assert merge([a, c]).flags[0] == OUT_OF_ORDER
    d = DaySummary(D0)
    d.add(times(3), arr(0.5))  # after a's stretch but lower: the counter dropped
    assert merge([a, d]).flags[0] == DROP


def test_a_batch_is_only_kept_once_committed() -> None:
    w = RollupWriter(frozenset({METRIC}), "p")
    readings = [
        Reading(DAY0 + timedelta(minutes=i), "m1", METRIC, float(i), "kWh") for i in range(3)
    ]
    pending = w.prepare(readings)
    assert w.prepare(readings)[(METRIC, "m1", D0)].n[0] == 3  # nothing kept from the first
    w.commit(pending)
    assert w.prepare(readings[2:])[(METRIC, "m1", D0)].n[0] == 3  # the last again: no change
    (line,) = w.lines(pending)
    assert line.startswith(f'{MEASUREMENT},device=m1,metric={METRIC},part=p s="')
    assert line.endswith(f'" {D0}')


# -- on influxd -----------------------------------------------------------------------------
def rd(t_us: int, device: str, value: float, q: Quality = Quality.GOOD) -> Reading:
    return Reading(
        datetime.fromtimestamp(t_us / 1e6, UTC), device, METRIC, value, "kWh", q, {"b": "A座"}
    )


def series(device: str, t_us: np.ndarray, v: np.ndarray) -> list[Reading]:
    return [rd(int(t), device, float(x)) for t, x in zip(t_us, v, strict=True)]


def minute_counter(
    device: str, days: int, rng: np.random.Generator, step: int = 1
) -> list[Reading]:
    t = D0 + np.arange(0, days * 1440, step, dtype=np.int64) * MIN_US
    t += rng.integers(0, 50, len(t)) * 1_000_000  # polls are never exactly on the minute
    return series(device, t, 1000 + np.cumsum(rng.random(len(t)) * (rng.random(len(t)) > 0.2)))


def windows_of(every: timedelta, days: int) -> Windows:
    start = DAY0 + timedelta(hours=16)  # local midnight in Asia/Shanghai: on the grid
    return Windows(start, start + timedelta(days=days - 2), every)


def assert_same(got: dict[str, CounterArrays], want: dict[str, CounterArrays]) -> None:
    assert sorted(got) == sorted(want)
    for d in want:
        g, w = got[d], want[d]
        for name in ("present", "samples", "glitches", "rollovers", "resets"):
            assert np.array_equal(getattr(g, name), getattr(w, name)), (d, name)
        np.testing.assert_allclose(g.delta, w.delta, rtol=1e-12, atol=1e-9, err_msg=d)


def test_summaries_give_the_numbers_of_every_sample(influx_store_factory: StoreFactory) -> None:
    rng = np.random.default_rng(11)
    store = influx_store_factory()
    second = InfluxStore(store.settings, rollup_metrics=ROLLUP_METRICS)  # another writer
    raw = InfluxStore(store.settings)  # reads every sample, writes no summary
    days = 5
    steady = minute_counter("steady", days, rng)
    sparse = minute_counter("sparse", days, rng, step=37)
    flat = series("flat", D0 + np.arange(0, days * 96) * GRID_US, np.full(days * 96, 5.0))
    glitch = minute_counter("glitch", days, rng, step=5)
    glitch[300] = rd(to_us(glitch[300].time), "glitch", 0.0)  # a read glitch: drop and back
    edges = series("edges", D0 + np.arange(0, days * 96, 3) * GRID_US, np.arange(days * 32) * 2.0)
    shared = minute_counter("shared", days, rng, step=3)  # written half by each writer
    replayed = minute_counter("replayed", days, rng, step=2)
    late = minute_counter("late", days, rng, step=4)
    bad = minute_counter("bad", days, rng, step=10)
    bad[40] = rd(to_us(bad[40].time), "bad", 1e9, Quality.BAD)  # never a counter reading
    gap = minute_counter("gap", days, rng, step=6)
    gap = gap[:200] + gap[700:]  # silent for two days

    def in_batches(readings: list[Reading], writer: InfluxStore, size: int) -> None:
        for i in range(0, len(readings), size):
            writer.write(ReadingBatch.from_readings(readings[i : i + size]))

    for rs in (steady, sparse, flat, glitch, edges, bad, gap):
        in_batches(rs, store, int(rng.integers(50, 700)))
    for i in range(0, len(shared), 40):
        (store if (i // 40) % 2 else second).write(shared[i : i + 40])
    for i in range(0, len(replayed), 100):
        store.write(replayed[i : i + 100])
        if i % 700 == 0:
            store.write(replayed[i : i + 100])  # an outbox re-sending a batch it lost track of
    late_ones = late[100:110]
    store.write(late[:100] + late[110:])
    store.write(late_ones)  # arrived after the rest

    for every in (timedelta(minutes=15), timedelta(hours=1), timedelta(days=1)):
        w = windows_of(every, days)
        got = store.counter_delta_arrays(METRIC, w, lookback=timedelta(hours=8))
        want = raw.counter_delta_arrays(METRIC, w, lookback=timedelta(hours=8))
        assert_same(got, want)
        got2 = second.counter_delta_arrays(METRIC, w, rollover=1e5)
        assert_same(got2, raw.counter_delta_arrays(METRIC, w, rollover=1e5))

    # The summaries were used where they can vouch, every sample where they cannot.
    pts = store.counter_points(METRIC, DAY0, DAY0 + timedelta(days=days))
    assert pts["steady"][2] is not None and len(pts["steady"][0]) <= 2 * 96 * days
    assert pts["glitch"][2] is None  # drops: the counter rules need every sample
    assert pts["shared"][2] is not None and int(pts["shared"][2].sum()) == len(shared)
    t_late = pts["late"][0]
    assert pts["late"][2] is not None and len(t_late) < len(late)  # only the late buckets raw
    for store_ in (second, raw):
        store_.close()


def test_samples_stored_before_summaries_existed_are_read_raw(
    influx_store_factory: StoreFactory,
) -> None:
    rng = np.random.default_rng(2)
    raw = influx_store_factory()
    old = InfluxStore(raw.settings)  # a facmon without summaries wrote the first two days
    history = minute_counter("pm", 4, rng)
    old.write(history[: 2 * 1440])
    new = InfluxStore(raw.settings, rollup_metrics=ROLLUP_METRICS)
    new.write(history[2 * 1440 :])
    w = windows_of(timedelta(hours=1), 4)
    assert_same(new.counter_delta_arrays(METRIC, w), old.counter_delta_arrays(METRIC, w))
    cf = new._complete_from([METRIC])[METRIC]
    assert cf == to_us(history[2 * 1440 - 1].time) // GRID_US * GRID_US + GRID_US
    for s in (old, new):
        s.close()


def test_a_restarted_writer_takes_over_its_part(
    influx_store_factory: StoreFactory, tmp_path: Path
) -> None:
    rng = np.random.default_rng(4)
    raw = influx_store_factory()
    day = minute_counter("pm", 1, rng)
    first = InfluxStore(raw.settings, rollup_metrics=ROLLUP_METRICS, rollup_dir=tmp_path)
    beside = InfluxStore(raw.settings, rollup_metrics=ROLLUP_METRICS, rollup_dir=tmp_path)
    assert first._rollups is not None and beside._rollups is not None
    assert first._rollups.part != beside._rollups.part  # never two writers on one part
    part = first._rollups.part
    first.write(day[:700])
    first.close()  # restart
    again = InfluxStore(raw.settings, rollup_metrics=ROLLUP_METRICS, rollup_dir=tmp_path)
    assert again._rollups is not None and again._rollups.part == part
    again.write(day[700:])

    parts = raw.query(f'SELECT "s" FROM "{MEASUREMENT}" GROUP BY "part"')
    assert [s["tags"]["part"] for s in parts] == [part]  # no series added by the restart
    pts = again.counter_points(METRIC, DAY0, DAY0 + timedelta(days=1))
    assert pts["pm"][2] is not None and int(pts["pm"][2].sum()) == 1440
    assert len(pts["pm"][0]) == 2 * BUCKETS
    for s in (again, beside):
        s.close()


def test_a_refused_batch_leaves_no_summary_of_samples_never_stored(
    influx_store_factory: StoreFactory, influxd: InfluxServer
) -> None:
    store = influx_store_factory()
    # Someone else made "value" a string field in this shard: influxd 1.x stores the lines of a
    # batch it can (the summaries) and refuses the rest (the samples) with HTTP 400.
    httpx.post(
        f"{influxd.url}/write",
        params={"db": store.settings.bucket, "precision": "u"},
        content=f'{METRIC},device=other value="text" {D0}'.encode(),
    ).raise_for_status()
    readings = series("pm", times(1, 2, 3, 20), arr(1, 2, 3, 4))
    with pytest.raises(RejectedPointsError, match="field type conflict"):
        store.write(readings)

    assert store.counter_points(METRIC, DAY0, DAY0 + timedelta(days=1)) == {}


@pytest.mark.parametrize("opener", ["facmon.runtime", "facmon.ingest"])
@pytest.mark.parametrize("enabled", [True, False])
def test_every_writing_process_summarises_the_report_counters(
    influxd: InfluxServer, tmp_path: Path, opener: str, enabled: bool
) -> None:
    import importlib

    from config.models import SiteConfig

    config = SiteConfig.model_validate(
        {
            "site": {"id": "s", "name": "S", "timezone": "Asia/Shanghai"},
            "buildings": [{"id": "b1", "name": "B1", "floor_area_m2": 1000, "floors": 3}],
            "data_dir": str(tmp_path),
            "storage": {
                "backend": "influxdb",
                "influxdb": {
                    "url": influxd.shim_url,
                    "bucket": "facmon_opened",
                    "counter_summaries": enabled,
                },
            },
            "reports": {"water": {"metric": "water_m3"}},
        }
    )
    store = importlib.import_module(opener).open_store(config)
    assert isinstance(store, InfluxStore)
    try:
        want = {"energy_import", "water_m3"} if enabled else set()
        assert store._rollup_metrics == want
        assert bool(list((tmp_path / "counter-summaries").glob("*.part"))) == enabled
    finally:
        store.close()


def test_history_from_before_the_summaries_is_summarised_by_the_command(
    influxd: InfluxServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import yaml

    from facmon.cli import main

    rng = np.random.default_rng(8)
    settings = InfluxStorage(url=influxd.shim_url, bucket="facmon_history")
    init_influx(settings)
    old = InfluxStore(settings)  # a facmon without summaries wrote three days
    history = minute_counter("pm", 4, rng, step=2)
    history[500] = rd(to_us(history[500].time), "pm", 0.0)  # a glitch: that day stays raw
    old.write(history[: 3 * 720])
    new = InfluxStore(settings, rollup_metrics=ROLLUP_METRICS)
    new.write(history[3 * 720 :])
    w = windows_of(timedelta(hours=1), 4)
    want = old.counter_delta_arrays(METRIC, w)
    before = new.counter_points(METRIC, DAY0, DAY0 + timedelta(days=4))["pm"]
    assert before[2] is None  # drops anywhere: every sample, as before the command

    site = {
        "site": {"id": "h", "name": "H", "timezone": "Asia/Shanghai"},
        "buildings": [{"id": "b1", "name": "B1", "floor_area_m2": 1000, "floors": 3}],
        "data_dir": str(tmp_path),
        "storage": {
            "backend": "influxdb",
            "influxdb": {"url": settings.url, "bucket": settings.bucket},
        },
        "reports": {"energy": {"metric": METRIC}},
    }
    (tmp_path / "site.yaml").write_text(yaml.safe_dump(site), encoding="utf-8")
    for _ in range(2):  # a second run rewrites the same summaries
        assert main(["influx", "summarise", "--config", str(tmp_path / "site.yaml")]) == 0
    out = capsys.readouterr().out
    assert f"{METRIC}: 3 UTC days summarised" in out
    assert "volume: nothing stored before the summaries began" in out

    assert_same(new.counter_delta_arrays(METRIC, w), want)
    after = new.counter_points(METRIC, DAY0 + timedelta(days=1), DAY0 + timedelta(days=4))
    assert after["pm"][2] is not None  # days without the glitch come from summaries now
    assert len(after["pm"][0]) <= 2 * BUCKETS * 3
    parts = old.query(f'SELECT count("s") FROM "{MEASUREMENT}" GROUP BY "part"')
    assert len(parts) == 2  # the writer's and the history's, however often the command ran
    for s in (old, new):
        s.close()
