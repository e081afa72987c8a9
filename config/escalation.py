"""Escalation chains: who is paged about a ticket, in which order, and how often (E1-E8 of
../shared/alerting-semantics.md).

Kept beside ``config.models`` (which imports it) so that the models file stays about the site
itself. A chain is picked per ticket by priority and fault class; the first chain whose
``match`` fits wins, so put specific chains before a catch-all one.

Saving a chain validates it (E7): :func:`escalation_problems` finds steps that can never run,
repeats that would page in a tight loop, and targets nobody can reach. It works on the raw
YAML data so that the loader can point at the file and line of each problem.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import time, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from config.common import DAY_MINUTES, Loc, declared, parse_hours, section, unknown
from config.durations import Duration

Priority = Literal["P1", "P2", "P3"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def parse_window(v: str) -> tuple[time, time]:
    """``"08:00-20:00"`` as local (start, end); an end before the start wraps past midnight."""
    start, end = parse_hours(v)
    end %= DAY_MINUTES  # 24:00 ends the day: midnight
    return time(start // 60, start % 60), time(end // 60, end % 60)


class NotifyTarget(_Model):
    person: str | None = Field(default=None, description="Page this person (an oncall.people id)")
    rotation: str | None = Field(
        default=None,
        description="Page whoever is on call in this rotation when the step runs (overrides "
        "beat the rotation; nobody on call pages oncall.fallback)",
    )
    team: list[str] = Field(
        default_factory=list, description="Page all these people at once (oncall.people ids)"
    )
    channels: list[str] = Field(
        default_factory=list,
        description="Reach them only through these channels; default: each person's contacts",
    )

    @model_validator(mode="after")
    def _one_target(self) -> NotifyTarget:
        given = [k for k in ("person", "rotation") if getattr(self, k) is not None]
        if self.team:
            given.append("team")
        if len(given) != 1:
            raise ValueError("give exactly one of 'person', 'rotation' or 'team'")
        return self


class NotifyStep(_Model):
    notify: NotifyTarget = Field(description="Page a person, a rotation's on-call or a team")


class WaitStep(_Model):
    wait: Duration = Field(description="Wait this long for an acknowledgement before going on")

    @field_validator("wait")
    @classmethod
    def _positive(cls, v: timedelta) -> timedelta:
        if v <= timedelta(0):
            raise ValueError("a wait must be longer than 0s")
        return v


class OnlyBetweenStep(_Model):
    only_between: str = Field(
        description="Local time window, e.g. '08:00-22:00': outside it the chain waits for the "
        "window to open before the next step"
    )

    @field_validator("only_between")
    @classmethod
    def _window(cls, v: str) -> str:
        parse_window(v)
        return v

    @property
    def window(self) -> tuple[time, time]:
        return parse_window(self.only_between)


class WebhookStep(_Model):
    webhook: str = Field(
        description="Post to this channel (a group robot or webhook), not to a person"
    )


class Repeat(_Model):
    times: int | Literal["until_ack"] = Field(
        description="How many more rounds, or 'until_ack' to page until someone acknowledges "
        "(E8, for critical classes)"
    )
    from_step: int = Field(default=0, ge=0, description="Step index (from 0) a round starts at")

    @field_validator("times")
    @classmethod
    def _bounded(cls, v: int | str) -> int | str:
        if isinstance(v, int) and not 1 <= v <= 100:
            raise ValueError("times must be between 1 and 100 (or 'until_ack')")
        return v


class RepeatStep(_Model):
    repeat: Repeat = Field(description="Go back to an earlier step")


Step = NotifyStep | WaitStep | OnlyBetweenStep | WebhookStep | RepeatStep


class ChainMatch(_Model):
    priorities: list[Priority] = Field(
        default_factory=list, description="Tickets of these priorities; empty: any"
    )
    fault_classes: list[str] = Field(
        default_factory=list, description="Tickets of these fault classes; empty: any"
    )


class Chain(_Model):
    id: str = Field(description="Chain id, shown on the ticket's timeline")
    match: ChainMatch = Field(default_factory=ChainMatch, description="Tickets this chain pages")
    steps: list[Step] = Field(min_length=1, description="Steps, run in order (E1)")

    def fits(self, priority: str, fault_class: str) -> bool:
        m = self.match
        return (not m.priorities or priority in m.priorities) and (
            not m.fault_classes or fault_class in m.fault_classes
        )


class Escalation(_Model):
    chains: list[Chain] = Field(
        default_factory=list,
        description="Escalation chains; a ticket follows the first whose 'match' fits it, and "
        "no chain at all means nobody is paged",
    )
    ack_timeout: Duration = Field(
        default=timedelta(minutes=30),
        description="An acknowledged ticket with nobody arrived or started within this gets a "
        "reminder; after as long again it is un-acknowledged and paging restarts (E3)",
    )
    ack_timeouts: dict[str, Duration] = Field(
        default_factory=dict,
        description="ack_timeout per fault class, e.g. {entrapment: 15m}",
    )
    group_messages: bool = Field(
        default=True,
        description="Messages of one kind to one person on one channel about tickets of one "
        "building and priority that fall due together go as one message listing the tickets "
        "(an alert storm pages once); tickets are never merged (D5)",
    )
    retry_for: Duration = Field(
        default=timedelta(hours=6),
        description="A message that cannot be delivered is retried (with backoff) this long, "
        "then given up and logged",
    )

    def chain_for(self, priority: str, fault_class: str) -> Chain | None:
        return next((c for c in self.chains if c.fits(priority, fault_class)), None)

    def ack_timeout_for(self, fault_class: str) -> timedelta:
        return self.ack_timeouts.get(fault_class, self.ack_timeout)


# -- E7: validation against the rest of the site config ----------------------------------------


def _step_kind(step: Any) -> str | None:
    if isinstance(step, Mapping) and len(step) == 1:
        k = next(iter(step))
        return k if isinstance(k, str) else None
    return None


def _reachable_problems(steps: Sequence[Any], base: Loc) -> Iterator[tuple[Loc, str]]:
    kinds = [_step_kind(s) for s in steps]
    if not any(k in ("notify", "webhook") for k in kinds):
        yield base, "a chain needs at least one 'notify' or 'webhook' step"
    for i, (step, kind) in enumerate(zip(steps, kinds, strict=True)):
        if kind != "repeat":
            continue
        spec = step["repeat"]
        if not isinstance(spec, Mapping):
            continue
        start = spec.get("from_step", 0)
        if isinstance(start, int) and not isinstance(start, bool):
            if start >= i:
                yield (
                    (*base, i, "repeat", "from_step"),
                    (f"from_step {start} must point at an earlier step (this is step {i})"),
                )
            elif "wait" not in kinds[start:i] and "only_between" not in kinds[start:i]:
                # Without a wait the round would page again in the same instant, forever.
                yield (
                    (*base, i, "repeat"),
                    (f"the repeated steps {start}..{i - 1} need a 'wait' between rounds"),
                )
        if spec.get("times") == "until_ack" and i < len(steps) - 1:
            yield (*base, i + 1), "unreachable: the step before repeats until acknowledged"
    if kinds and kinds[-1] == "wait":
        yield (*base, len(steps) - 1), "a 'wait' as the last step delays nothing; remove it"


def escalation_problems(data: Any) -> Iterator[tuple[Loc, str]]:
    """E7 on the raw config: unreachable steps, tight repeat loops, unknown people, rotations
    and channels, and targets without any way to reach them."""
    esc = section(data, "escalation")
    if esc is None:
        return
    chains = esc.get("chains")
    if not isinstance(chains, list):
        return
    oncall = section(data, "oncall") or {}
    people = declared(oncall.get("people"))
    rotations = declared(oncall.get("rotations"))
    channels = declared(data.get("channels"))
    seen: set[str] = set()
    for ci, chain in enumerate(chains):
        if not isinstance(chain, Mapping):
            continue
        cid = chain.get("id")
        if isinstance(cid, str):
            if cid in seen:
                yield ("escalation", "chains", ci, "id"), f"chain id {cid!r} is used twice"
            seen.add(cid)
        steps = chain.get("steps")
        if not isinstance(steps, list):
            continue
        base: Loc = ("escalation", "chains", ci, "steps")
        yield from _reachable_problems(steps, base)
        for si, step in enumerate(steps):
            kind = _step_kind(step)
            if kind == "webhook":
                ch = step["webhook"]
                if isinstance(ch, str) and ch not in channels:
                    yield (*base, si, "webhook"), unknown("channel", ch, channels)
            elif kind == "notify" and isinstance(step["notify"], Mapping):
                yield from _target_problems(
                    step["notify"], (*base, si, "notify"), people, rotations, channels, oncall
                )


def _reachable(person: Mapping[str, Any], only: Sequence[str], channels: Mapping[str, Any]) -> bool:
    """Whether any channel can reach ``person``: one of their contacts (restricted to ``only``
    when given) that exists; an e-mail channel also needs their address."""
    contacts = person.get("contacts") or []
    for c in contacts if isinstance(contacts, list) else []:
        if only and c not in only:
            continue
        ch = channels.get(c)
        if not isinstance(ch, Mapping):
            continue
        if ch.get("type") == "email" and not person.get("email"):
            continue
        return True
    return False


def _target_problems(
    target: Mapping[str, Any],
    loc: Loc,
    people: Mapping[str, Any],
    rotations: Mapping[str, Any],
    channels: Mapping[str, Any],
    oncall: Mapping[str, Any],
) -> Iterator[tuple[Loc, str]]:
    only = [c for c in target.get("channels") or [] if isinstance(c, str)]
    for i, c in enumerate(only):
        if c not in channels:
            yield (*loc, "channels", i), unknown("channel", c, channels)
    named: list[tuple[Loc, str]] = []
    if isinstance(target.get("person"), str):
        named.append(((*loc, "person"), target["person"]))
    team = target.get("team")
    if isinstance(team, list):
        named += [((*loc, "team", i), p) for i, p in enumerate(team) if isinstance(p, str)]
    rot = target.get("rotation")
    if isinstance(rot, str):
        if rot not in rotations:
            yield (*loc, "rotation"), unknown("rotation", rot, rotations)
        else:
            members = rotations[rot].get("members")
            for m in members if isinstance(members, list) else []:
                if isinstance(m, str):
                    named.append(((*loc, "rotation"), m))
            fb = oncall.get("fallback")
            if isinstance(fb, str):
                named.append(((*loc, "rotation"), fb))
    for where, pid in named:
        person = people.get(pid)
        if person is None:
            if where[-1] != "rotation":  # the rotation's own check names unknown members
                yield where, unknown("person", pid, people)
            continue
        if not _reachable(person, only, channels):
            how = f" through {', '.join(only)}" if only else ""
            yield (
                where,
                (
                    f"{pid} has no contact method{how}: give them 'contacts' (channel ids) and, "
                    "for e-mail, an 'email' address"
                ),
            )
