"""The simulated building: behaviour models of meters and elevators behind real Modbus servers.

It is a top-level package, not part of ``collector``, because it is not on the data path: the
demo (``facmon demo``) serves it to a real collector, the tests poll it instead of hardware, and
the benchmarks back-fill weeks of history from it. Nothing in collection, storage, alerting or
reporting imports it. Its weather (outdoor temperature) drives the power meters' air
conditioning and the outdoor sensor alike.

``DEMO_SITE`` is the demo site's config file (Riverside Plaza 滨江广场).
"""

from pathlib import Path

from simulator.building import SimulatedBuilding, default_params, with_ports
from simulator.models import (
    ElevatorParams,
    LeakEpisode,
    OutdoorSensorParams,
    PowerMeterParams,
    WaterMeterParams,
    WeatherParams,
)

DEMO_SITE: Path = Path(__file__).with_name("demo_site.yaml")

__all__ = [
    "DEMO_SITE",
    "ElevatorParams",
    "LeakEpisode",
    "OutdoorSensorParams",
    "PowerMeterParams",
    "SimulatedBuilding",
    "WaterMeterParams",
    "WeatherParams",
    "default_params",
    "with_ports",
]
