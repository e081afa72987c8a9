"""Device collection: profiles (register maps as data), the codec, read planning, Modbus polling."""

from collector.codec import decode, encode, quality_of
from collector.modbus import DeviceHealth, ModbusCollector
from collector.mqtt import MqttCollector, MqttStats
from collector.planner import Read, plan
from collector.profile import (
    Profile,
    ProfileError,
    Register,
    available_profiles,
    load_profile,
    validate_profile,
)
from collector.tags import device_tags

__all__ = [
    "DeviceHealth",
    "ModbusCollector",
    "MqttCollector",
    "MqttStats",
    "Profile",
    "ProfileError",
    "Read",
    "Register",
    "available_profiles",
    "decode",
    "device_tags",
    "encode",
    "load_profile",
    "plan",
    "quality_of",
    "validate_profile",
]
