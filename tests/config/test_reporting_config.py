"""Report settings in the site file: tariffs, sub-meters, weather CSV; errors name the line."""

from __future__ import annotations

from datetime import date
from pathlib import Path

from config.loader import load_config_text
from tests.config.helpers import MINIMAL, problems_of

METER = """\
  - id: {id}
    name: meter {id}
    kind: power_meter
    location: {{building: b1}}
    source: {{type: modbus_tcp, host: 127.0.0.1, profile: generic_power_meter_3p}}
"""

TARIFF = """\
tariffs:
  - id: gd
    name: Guangdong 2021
    versions:
      - effective_from: 2021-10-01
        prices: {flat: 0.6, peak: 1.02, valley: 0.228, sharp: 1.275}
        periods:
          - {band: valley, hours: ["00:00-08:00"]}
          - {band: peak, hours: ["10:00-12:00", "14:00-19:00"]}
          - {band: sharp, hours: ["11:00-12:00", "15:00-17:00"], months: [7, 8, 9]}
"""


def test_a_tariff_and_a_sub_meter_load() -> None:
    text = (
        MINIMAL
        + "devices:\n"
        + METER.format(id="main")
        + METER.format(id="sub")
        + "    parent: main\n"
        + TARIFF
    )
    cfg = load_config_text(text, env={})
    assert cfg.device("sub").parent == "main"
    version = cfg.tariffs[0].versions[0]
    assert version.effective_from == date(2021, 10, 1)
    assert version.periods[2].hours == [(11 * 60, 12 * 60), (15 * 60, 17 * 60)]
    assert cfg.reports.uptime.target == 0.98  # defaults from the domain
    assert cfg.reports.maintenance.on_time_target == 0.92


def test_unknown_parent_and_tariff_building_are_reported_with_their_lines() -> None:
    text = (
        MINIMAL
        + "devices:\n"
        + METER.format(id="main")
        + "    parent: mian\n"
        + TARIFF.replace("    name: Guangdong 2021\n", "    name: G\n    buildings: [b2]\n")
    )
    got = problems_of(text)
    assert any(p.startswith("site.yaml:10 devices[0].parent:") and "'main'" in p for p in got)
    assert any(p.startswith("site.yaml:14 tariffs[0].buildings[0]:") for p in got), got


def test_bad_tariff_values_say_what_is_wrong() -> None:
    text = MINIMAL + TARIFF.replace('"10:00-12:00"', '"12:00-10:00"').replace(
        "peak: 1.02, ", ""
    )
    got = "\n".join(problems_of(text))
    assert "ends before it starts" in got
    assert "site.yaml:" in got


def test_a_weather_csv_path_is_relative_to_the_config_file(tmp_path: Path) -> None:
    text = MINIMAL + "reports:\n  savings:\n    temperature: {csv: weather/outdoor.csv}\n"
    cfg = load_config_text(text, env={}, base_dir=tmp_path / "etc")
    source = cfg.reports.savings.temperature
    assert source is not None
    assert source.csv == tmp_path / "etc" / "weather" / "outdoor.csv"
