"""Config checks that need more than the config package knows: device profiles live in the
collector, so the composition root joins the two for ``facmon config check`` and start-up."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from collector.profile import ProfileError, load_profile
from config.loader import Loc


def profile_check(data: Any) -> Iterable[tuple[Loc, str]]:
    """Every device's profile exists, is valid, and is meant for the device's kind."""
    devices = data.get("devices") if isinstance(data, dict) else None
    if not isinstance(devices, list):
        return
    for i, dev in enumerate(devices):
        src = dev.get("source") if isinstance(dev, dict) else None
        name = src.get("profile") if isinstance(src, dict) else None
        if not isinstance(name, str):
            continue  # the model validation reports a missing or mistyped profile
        loc: Loc = ("devices", i, "source", "profile")
        try:
            profile = load_profile(name)
        except FileNotFoundError as e:
            yield loc, str(e)
            continue
        except ProfileError as e:
            yield loc, "; ".join(e.problems)
            continue
        kind = dev.get("kind")
        if isinstance(kind, str) and profile.kind and profile.kind != kind:
            yield loc, f"profile {name!r} is for {profile.kind} devices, not {kind}"


CHECKS = (profile_check,)
