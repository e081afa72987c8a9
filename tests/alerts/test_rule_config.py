"""Config checks of the alert-rule fields added for the state machine (A4-A8)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from config import load_config_text
from config.loader import ConfigError
from config.models import ThresholdRule

BASE: dict[str, Any] = {
    "id": "hot",
    "name": "Hot",
    "metric": "temp",
    "above": 80,
    "fault_class": "overtemp",
}


def test_defaults_and_durations() -> None:
    rule = ThresholdRule.model_validate(BASE)
    assert rule.keep_firing_for == timedelta(0) and rule.stale_after is None
    assert rule.deadband is None and rule.clear_level == 80
    rule = ThresholdRule.model_validate(
        {**BASE, "keep_firing_for": "5m", "stale_after": "90s", "deadband": 2.5}
    )
    assert rule.keep_firing_for == timedelta(minutes=5)
    assert rule.stale_after == timedelta(seconds=90)
    assert rule.clear_level == 77.5
    low = ThresholdRule.model_validate({**BASE, "above": None, "below": 10, "deadband": 1})
    assert low.clear_level == 11


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"keep_firing_for": "-5s"}, "expected a duration"),
        ({"keep_firing_for": "8d"}, "between 0s and 7d"),
        ({"stale_after": "0s"}, "between 1s and 1d"),
        ({"stale_after": "2d"}, "between 1s and 1d"),
        ({"deadband": -1}, "greater than or equal to 0"),
        ({"clear": 70, "deadband": 5}, "either 'clear' or 'deadband'"),
        ({"id": "communication_loss"}, "reserved for the built-in communication-loss"),
    ],
)
def test_bad_values_are_refused_with_a_clear_message(extra: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ThresholdRule.model_validate({**BASE, **extra})


def test_the_loader_points_at_the_line_of_a_bad_rule_field() -> None:
    text = """\
site: {id: s1, name: Site}
buildings:
  - {id: b1, name: B1, floor_area_m2: 100, floors: 2}
rules:
  - id: r1
    name: R
    metric: m
    above: 1
    fault_class: f
    keep_firing_for: a while
"""
    with pytest.raises(ConfigError) as info:
        load_config_text(text, filename="site.yaml", env={})
    assert [str(p) for p in info.value.problems] == [
        "site.yaml:10 rules[0].keep_firing_for: expected a duration such as 10s, 5m or 1h, "
        "got 'a while'"
    ]
