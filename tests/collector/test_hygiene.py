"""Counter hygiene: glitches flagged UNCERTAIN, rollovers and confirmed resets kept GOOD."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest

from collector.hygiene import CounterEvents, CounterGuard
from collector.profile import load_profile
from store.reading import Quality, Reading

T0 = datetime(2024, 3, 1, 8, 0, tzinfo=UTC)
G, U, B = Quality.GOOD, Quality.UNCERTAIN, Quality.BAD


def reading(
    value: float,
    minute: float,
    device: str = "meter-1",
    metric: str = "energy_import",
    quality: Quality = Quality.GOOD,
) -> Reading:
    return Reading(T0 + timedelta(minutes=minute), device, metric, value, "kWh", quality)


def run(
    guard: CounterGuard,
    values: Sequence[float],
    rollover: float | None = None,
    max_rate: float | None = None,
    device: str = "meter-1",
    metric: str = "energy_import",
) -> list[Quality]:
    """Feed one read per minute; the qualities the guard gives back."""
    out = []
    for i, v in enumerate(values):
        checked = guard.check(reading(v, i, device, metric), rollover, max_rate)
        # Only the quality may change: value, time and identity are the device's.
        assert (checked.value, checked.key) == (v, reading(v, i, device, metric).key)
        out.append(checked.quality)
    return out


def test_a_zero_read_between_good_reads_is_uncertain_and_nothing_else_is() -> None:
    guard = CounterGuard()
    assert run(guard, [100, 101, 0, 102]) == [G, G, U, G]
    assert guard.events("meter-1", "energy_import") == CounterEvents(glitches=1)
    assert guard.baseline("meter-1", "energy_import") == (T0 + timedelta(minutes=3), 102)


def test_a_far_low_read_is_a_glitch_too_and_does_not_move_the_baseline() -> None:
    guard = CounterGuard()
    assert run(guard, [5000.0, 5000.5, 50.0, 5001.0, 5001.5]) == [G, G, U, G, G]
    assert guard.events("meter-1", "energy_import").glitches == 1


def test_rollover_of_a_uint32_counter_at_0_01_kwh_is_good_and_logged_at_info(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # generic_power_meter_3p's energy_import: uint32 in 0.01 kWh wraps at 2**32 * 0.01 kWh.
    rollover = load_profile("generic_power_meter_3p").register("energy_import").rollover
    assert rollover == pytest.approx(2**32 * 0.01)
    guard = CounterGuard()
    with caplog.at_level(logging.INFO, logger="collector.hygiene"):
        qualities = run(guard, [42_949_670.00, 42_949_672.50, 1.20, 3.70], rollover=rollover)
    assert qualities == [G, G, G, G]
    assert guard.events("meter-1", "energy_import") == CounterEvents(rollovers=1)
    infos = [r for r in caplog.records if r.levelno == logging.INFO]
    assert len(infos) == 1 and "rollover" in infos[0].getMessage()
    assert "meter-1" in infos[0].getMessage()
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_a_drop_to_zero_far_from_the_register_maximum_is_not_a_rollover() -> None:
    guard = CounterGuard()
    rollover = 2**32 * 0.01
    assert run(guard, [1000.0, 1001.0, 0.0, 1002.0], rollover=rollover) == [G, G, U, G]
    assert guard.events("meter-1", "energy_import").rollovers == 0


def test_a_wrap_that_implies_an_impossible_advance_is_not_a_rollover() -> None:
    # Near the top and near zero, but 0.1 kWh/s for a minute allows 6 kWh, not 40.
    guard = CounterGuard()
    rollover = 2**32 * 0.01
    qualities = run(guard, [42_949_670.0, 38.0, 42_949_671.0], rollover=rollover, max_rate=0.1)
    assert qualities == [G, U, G]


def test_a_spike_above_max_rate_is_uncertain_and_the_counter_carries_on() -> None:
    # 0.5 kWh/s is a 1.8 MW feeder; polled every minute it can add at most 30 kWh.
    guard = CounterGuard()
    qualities = run(guard, [1000, 1010, 90_000, 1020, 1030], max_rate=0.5)
    assert qualities == [G, G, U, G, G]
    assert guard.events("meter-1", "energy_import") == CounterEvents(glitches=1)


def test_without_max_rate_a_jump_up_is_not_judged() -> None:
    assert run(CounterGuard(), [1000, 90_000, 90_001]) == [G, G, G]


def test_max_rate_allows_for_a_long_gap_between_reads() -> None:
    guard = CounterGuard()
    assert guard.check(reading(1000, 0), max_rate=0.5).quality is G
    # 2 hours later: 0.5 kWh/s * 7200 s = 3600 kWh allowed.
    assert guard.check(reading(4000, 120), max_rate=0.5).quality is G


def test_a_genuine_reset_is_confirmed_after_three_reads_and_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    guard = CounterGuard()
    with caplog.at_level(logging.DEBUG, logger="collector.hygiene"):
        qualities = run(guard, [5000, 5010, 0, 1, 2, 3, 4])
    # The first two low reads could still be glitches; the third confirms the new baseline.
    assert qualities == [G, G, U, U, G, G, G]
    assert guard.baseline("meter-1", "energy_import") == (T0 + timedelta(minutes=6), 4)
    assert guard.events("meter-1", "energy_import") == CounterEvents(glitches=2, resets=1)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    msg = warnings[0].getMessage()
    assert "reset" in msg and "meter-1" in msg and "energy_import" in msg
    assert "5010" in msg and " 2 " in msg
    record = warnings[0]
    assert record.__dict__["data_quality"] == "counter_reset"
    assert (record.__dict__["old_value"], record.__dict__["new_value"]) == (5010, 2)


def test_a_reset_is_confirmed_after_the_configured_number_of_reads() -> None:
    assert run(CounterGuard(confirm_reads=2), [5000, 0, 1, 2]) == [G, U, G, G]
    assert run(CounterGuard(confirm_reads=1), [5000, 0, 1]) == [G, G, G]


def test_unrelated_low_garbage_is_never_confirmed_as_a_reset() -> None:
    # A counter that restarted would count up from its new level; 0, 50, 0, 7, 3 does not.
    guard = CounterGuard()
    assert run(guard, [5000, 0, 50, 0, 7, 3, 5001]) == [G, U, U, U, U, U, G]
    assert guard.events("meter-1", "energy_import").resets == 0


def test_a_persistent_jump_above_max_rate_becomes_a_new_baseline(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A replaced meter that starts from a higher reading.
    guard = CounterGuard()
    with caplog.at_level(logging.WARNING, logger="collector.hygiene"):
        qualities = run(guard, [100, 101, 80_000, 80_001, 80_002, 80_003], max_rate=0.5)
    assert qualities == [G, G, U, U, G, G]
    assert guard.events("meter-1", "energy_import") == CounterEvents(glitches=2, steps=1)
    assert len(caplog.records) == 1 and "jump" in caplog.records[0].getMessage()


def test_state_is_per_device_and_metric() -> None:
    guard = CounterGuard()
    a_import = [(100, G), (0, U), (0, U), (101, G)]
    b_import = [(0, G), (5, G), (6, G), (7, G)]
    a_export = [(50, G), (51, G), (52, G), (0, U)]
    for i in range(4):
        for device, metric, seq in (
            ("meter-a", "energy_import", a_import),
            ("meter-b", "energy_import", b_import),
            ("meter-a", "energy_export", a_export),
        ):
            value, expected = seq[i]
            got = guard.check(reading(value, i, device, metric)).quality
            assert got is expected, (device, metric, i)
    assert guard.events("meter-a", "energy_import") == CounterEvents(glitches=2)
    assert guard.events("meter-b", "energy_import") == CounterEvents()
    assert guard.events("meter-a", "energy_export") == CounterEvents(glitches=1)
    # Two low reads of meter-a's import and one of its export never add up to a reset.
    assert guard.events("meter-a", "energy_import").resets == 0


def test_forget_drops_one_counter_or_a_whole_device() -> None:
    guard = CounterGuard()
    run(guard, [100], device="meter-a")
    run(guard, [100], device="meter-a", metric="energy_export")
    run(guard, [100], device="meter-b")
    guard.forget("meter-a", "energy_export")
    assert guard.baseline("meter-a", "energy_export") is None
    assert guard.baseline("meter-a", "energy_import") is not None
    guard.forget("meter-a")
    assert guard.baseline("meter-a", "energy_import") is None
    assert guard.baseline("meter-b", "energy_import") is not None
    # After forgetting, the next read is a fresh baseline, not a drop.
    assert guard.check(reading(0, 5, "meter-a")).quality is G


def test_bad_and_uncertain_reads_pass_unchanged_and_do_not_move_the_baseline() -> None:
    guard = CounterGuard()
    assert guard.check(reading(100, 0)).quality is G
    bad = reading(0, 1, quality=B)
    assert guard.check(bad) is bad
    assert guard.check(reading(5, 2, quality=U)).quality is U
    assert guard.check(reading(float("nan"), 3)).quality is G  # not judged; the codec drops NaN
    assert guard.check(reading(101, 4)).quality is G
    assert guard.events("meter-1", "energy_import") == CounterEvents()


def test_a_replayed_or_older_sample_is_not_judged() -> None:
    guard = CounterGuard()
    run(guard, [100, 101])
    old = reading(0, 0)
    assert guard.check(old) is old
    assert guard.baseline("meter-1", "energy_import") == (T0 + timedelta(minutes=1), 101)


def test_tolerance_absorbs_read_noise_and_counter_resolution() -> None:
    guard = CounterGuard(tolerance=0.01)
    # A drop of one LSB is noise; the baseline stays at the higher value.
    assert run(guard, [100.00, 99.99, 100.01]) == [G, G, G]
    # A counter with 1 kWh resolution ticks by 1 even if max_rate allows only 0.06 per minute.
    coarse = CounterGuard(tolerance=1.0)
    assert run(coarse, [500, 501, 501, 502], max_rate=0.001) == [G, G, G, G]


@pytest.mark.parametrize(
    "kwargs",
    [{"confirm_reads": 0}, {"rollover_band": 0.0}, {"rollover_band": 0.5}, {"tolerance": -1.0}],
)
def test_bad_settings_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        CounterGuard(**kwargs)  # type: ignore[arg-type]
