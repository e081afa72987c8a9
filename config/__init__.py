"""Site configuration: pydantic models, and a loader that reports every problem with its line."""

from config.loader import ConfigError, Problem, load_config, load_config_text, sample_config
from config.models import Building, Device, SiteConfig

__all__ = [
    "Building",
    "ConfigError",
    "Device",
    "Problem",
    "SiteConfig",
    "load_config",
    "load_config_text",
    "sample_config",
]
