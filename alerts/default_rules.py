"""facmon's shipped default rules (``default_rules.yaml``) and the rules a site runs.

A site whose config says ``default_rules: true`` runs its own rules plus every default rule
whose id it does not use itself: a site rule with a default's id replaces it. The defaults are
written like site rules, except that ``names`` gives the name in each language and the site's
``language`` picks one. Meter offline is the built-in communication-loss alert of every device,
not a rule (alerts.engine, A8).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from importlib import resources
from typing import Any

import yaml
from pydantic import TypeAdapter

from config.models import AnyRule, Device, Rule, SiteConfig, ThresholdRule

__all__ = ["DefaultRuleUse", "applies", "default_rule_use", "default_rules", "site_rules"]

DEFAULT_RULES_RESOURCE = "default_rules.yaml"
_RULE: TypeAdapter[AnyRule] = TypeAdapter(Rule)


@functools.cache
def _raw() -> tuple[dict[str, Any], ...]:
    text = resources.files("alerts").joinpath(DEFAULT_RULES_RESOURCE).read_text(encoding="utf-8")
    data = yaml.safe_load(text)
    return tuple(data["rules"])


@functools.cache
def default_rules(language: str = "zh-CN") -> tuple[AnyRule, ...]:
    """The shipped default rules, named in ``language`` (zh-CN or en)."""
    out: list[AnyRule] = []
    for raw in _raw():
        data = dict(raw)
        names: dict[str, str] = data.pop("names")
        data["name"] = names.get(language) or names["en"]
        out.append(_RULE.validate_python(data))
    return tuple(out)


def site_rules(config: SiteConfig) -> list[AnyRule]:
    """The rules ``config`` runs: its own, then the defaults it does not replace by id (when
    ``default_rules`` is on)."""
    rules: list[AnyRule] = list(config.rules)
    if config.default_rules:
        own = {r.id for r in rules}
        rules += [r for r in default_rules(config.site.language) if r.id not in own]
    return rules


def applies(rule: AnyRule, device: Device) -> bool:
    """Whether ``rule`` watches ``device``: its selector covers the device and, for a level
    that is a share of a rating, the device has that rating."""
    if not rule.select.matches(device):
        return False
    return not (isinstance(rule, ThresholdRule) and rule.rated) or rule.rating_key in device.ratings


@dataclass(frozen=True, slots=True)
class DefaultRuleUse:
    """How one default rule applies to a site, for ``facmon config check``."""

    rule: AnyRule
    devices: tuple[str, ...]  # ids of the devices it watches
    replaced: bool  # the site has a rule with this id, which runs instead


def default_rule_use(config: SiteConfig) -> list[DefaultRuleUse]:
    """Every default rule with the devices it watches on this site (none when the site does
    not turn the defaults on)."""
    if not config.default_rules:
        return []
    own = {r.id for r in config.rules}
    return [
        DefaultRuleUse(
            rule,
            tuple(d.id for d in config.devices if applies(rule, d)),
            rule.id in own,
        )
        for rule in default_rules(config.site.language)
    ]
