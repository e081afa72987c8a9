"""What a rule's condition says about a sample: the interface between the rule kinds
(alerts.conditions, alerts.night_flow) and the alert state machine (alerts.engine)."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol


class Verdict(enum.Enum):
    TRIP = "trip"  # the condition holds
    CLEAR = "clear"  # back to normal (the clear level is reached)
    HOLD = "hold"  # between the levels (A4): a firing alert keeps firing


@dataclass(frozen=True, slots=True)
class Judgement:
    verdict: Verdict
    value: float  # what was judged: the sample, a rate, a night's minimum flow


class Condition(Protocol):
    """The judging half of one alert instance."""

    def judge(self, value: float, t: datetime) -> Judgement | None:
        """The verdict after the sample ``value`` at ``t`` (samples come in time order);
        None when there is none yet."""
        ...

    def due(self, now: datetime) -> Judgement | None:
        """A verdict that only the passing of time makes (a night that ended in silence)."""
        ...

    def text(self, value: float) -> str:
        """What was judged and against what, for ticket notes, e.g.
        ``temperature = 82 (trip > 80, clear <= 75)``."""
        ...
