"""Shared by the config tests: the smallest valid site and a way to collect problems."""

from __future__ import annotations

import pytest

from config.loader import ConfigError, load_config_text

MINIMAL = """\
site: {id: s1, name: Site}
buildings:
  - {id: b1, name: B1, floor_area_m2: 100, floors: 2}
"""


def problems_of(text: str, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config_text(text, filename="site.yaml", env=env or {})
    return [str(p) for p in info.value.problems]
