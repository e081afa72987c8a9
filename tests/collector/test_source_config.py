"""Source blocks of the site config as a user writes them: the three transports, their defaults,
per-device overrides and read limits, and every mistake reported with file, line and field."""

from __future__ import annotations

from datetime import timedelta
from typing import get_args

import pytest

from collector.planner import apply_overrides
from collector.profile import (
    DataType,
    ProfileError,
    Register,
    Table,
    WordOrder,
    load_profile,
)
from config.loader import ConfigError, load_config_text
from config.models import (
    ModbusRtuOverTcpSource,
    ModbusRtuSource,
    ModbusTcpSource,
    OverrideDataType,
    OverrideTable,
    OverrideWordOrder,
    RegisterOverride,
)
from facmon.checks import CHECKS

HEAD = """\
site: {id: s1, name: Site}
buildings:
  - {id: b1, name: B1, floor_area_m2: 100, floors: 2}
devices:
"""


def device(dev_id: str, source: str, kind: str = "power_meter") -> str:
    return f"""\
  - id: {dev_id}
    name: {dev_id}
    kind: {kind}
    location: {{building: b1}}
    source:
{source}"""


def problems_of(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config_text(text, filename="site.yaml", env={}, checks=CHECKS)
    return [str(p) for p in info.value.problems]


def test_three_source_types_load_with_their_defaults() -> None:
    text = HEAD + "".join(
        [
            device(
                "tcp",
                "      type: modbus_tcp\n"
                "      host: 192.0.2.21\n"
                "      profile: generic_power_meter_3p\n",
            ),
            device(
                "gw",
                "      type: modbus_rtu_over_tcp\n"
                "      host: 192.0.2.30\n"
                "      port: 4001\n"
                "      unit_id: 3\n"
                "      profile: generic_power_meter_3p\n"
                "      overrides:\n"
                "        energy_import: {word_order: CDAB, max: null}\n",
            ),
            device(
                "bus",
                "      type: modbus_rtu\n"
                "      port: /dev/ttyUSB0\n"
                "      parity: even\n"
                "      stopbits: 2\n"
                "      unit_id: 5\n"
                "      profile: generic_power_meter_3p\n"
                "      one_request_per_field: true\n",
            ),
        ]
    )
    config = load_config_text(text, filename="site.yaml", env={}, checks=CHECKS)
    tcp, gw, bus = (d.source for d in config.devices)
    assert isinstance(tcp, ModbusTcpSource) and tcp.port == 502
    assert isinstance(gw, ModbusRtuOverTcpSource) and (gw.port, gw.unit_id) == (4001, 3)
    assert isinstance(bus, ModbusRtuSource)
    assert (bus.port, bus.baudrate, bus.parity, bus.bytesize, bus.stopbits) == (
        "/dev/ttyUSB0",
        9600,
        "E",
        8,
        2,
    )
    assert tcp.pause_between_requests == timedelta(0)
    assert gw.pause_between_requests == bus.pause_between_requests == timedelta(milliseconds=20)
    for s in (tcp, gw, bus):
        assert (s.max_registers_per_read, s.max_bits_per_read, s.max_gap) == (125, 2000, 10)
        assert s.timeout == timedelta(seconds=1) and s.retries == 1
        assert s.pause_after_connect == timedelta(0)
    assert bus.one_request_per_field and not gw.one_request_per_field
    # Only what the config wrote is changed, explicit nulls included.
    assert gw.overrides["energy_import"].changes() == {"word_order": "CDAB", "max": None}


def test_every_source_field_documents_itself() -> None:
    for model in (ModbusTcpSource, ModbusRtuOverTcpSource, ModbusRtuSource, RegisterOverride):
        undocumented = [n for n, f in model.model_fields.items() if not f.description]
        assert not undocumented, (model.__name__, undocumented)


def test_override_literals_match_the_profile_literals() -> None:
    # config does not import the collector, so it keeps its own copies.
    assert get_args(OverrideTable) == get_args(Table)
    assert get_args(OverrideWordOrder) == get_args(WordOrder)
    assert get_args(OverrideDataType) == get_args(DataType)
    # Every register field but its identity and its counter nature can be overridden.
    assert set(RegisterOverride.model_fields) == set(Register.model_fields) - {"metric", "counter"}


def test_bad_serial_and_gateway_settings_are_reported_with_line_and_field() -> None:
    text = HEAD + "".join(
        [
            device(
                "m1",
                "      type: modbus_rtu\n"
                "      port: /dev/ttyUSB0\n"
                "      baudrate: 0\n"
                "      parity: X\n"
                "      bytesize: 7\n"
                "      stopbits: 3\n"
                "      profile: generic_power_meter_3p\n",
            ),
            device(
                "m2",
                "      type: modbus_rtu_over_tcp\n"
                "      host: 192.0.2.30\n"
                "      profile: generic_power_meter_3p\n"
                "      pause_between_requests: 20s\n"
                "      max_registers_per_read: 200\n"
                "      max_bits_per_read: 0\n"
                "      max_gap: -1\n"
                "      one_request_per_field: maybe\n",
            ),
            device(
                "m3",
                "      type: modbus_rtu_tcp\n"
                "      host: 192.0.2.30\n"
                "      port: 4001\n"
                "      profile: generic_power_meter_3p\n",
            ),
        ]
    )
    assert problems_of(text) == [
        "site.yaml:12 devices[0].source.baudrate: must be 300..921600",
        "site.yaml:13 devices[0].source.parity: must be one of: N, E, O (got 'X')",
        "site.yaml:14 devices[0].source.bytesize: must be one of: 8 (got 7)",
        "site.yaml:15 devices[0].source.stopbits: must be one of: 1, 2 (got 3)",
        # A missing field points at the nearest line that exists: the 'source:' line.
        "site.yaml:21 devices[1].source.port: required field missing",
        "site.yaml:25 devices[1].source.pause_between_requests: must be between 0s and 10s",
        "site.yaml:26 devices[1].source.max_registers_per_read: must be 1..125",
        "site.yaml:27 devices[1].source.max_bits_per_read: must be 1..2000",
        "site.yaml:28 devices[1].source.max_gap: must be 0..125",
        "site.yaml:29 devices[1].source.one_request_per_field: must be true or false",
        "site.yaml:35 devices[2].source.type: unknown source type 'modbus_rtu_tcp' "
        "(did you mean 'modbus_rtu_over_tcp'?)",
    ]


def test_overrides_are_checked_against_the_profile_naming_the_metric() -> None:
    text = HEAD + device(
        "m1",
        "      type: modbus_rtu_over_tcp\n"
        "      host: 192.0.2.30\n"
        "      port: 4001\n"
        "      profile: generic_power_meter_3p\n"
        "      overrides:\n"
        "        energy_imprt: {word_order: CDAB}\n"
        "        frequency: {address: 16}\n"
        "        voltage_b: {type: bit}\n"
        "        power_factor: {min: 2, max: 1}\n"
        "        current_a: {word_order: ACBD, adress: 3}\n"
        "        current_b: {address: null}\n",
    )
    assert problems_of(text) == [
        "site.yaml:15 devices[0].source.overrides.energy_imprt: override of unknown metric "
        "'energy_imprt': profile 'generic_power_meter_3p' has no such register "
        "(did you mean 'energy_import'?)",
        "site.yaml:16 devices[0].source.overrides.frequency: register 'frequency' (holding 16) "
        "overlaps register 'power_factor' (holding 16) (which spans 16..17)",
        "site.yaml:17 devices[0].source.overrides.voltage_b: register 'voltage_b' (holding 2): "
        "type 'bit' needs table coil or discrete, not holding",
        "site.yaml:18 devices[0].source.overrides.power_factor: register 'power_factor' "
        "(holding 16): min 2.0 is above max 1.0",
        "site.yaml:19 devices[0].source.overrides.current_a.word_order: must be one of: ABCD, "
        "DCBA, BADC, CDAB (got 'ACBD')",
        "site.yaml:19 devices[0].source.overrides.current_a.adress: unknown field 'adress' "
        "(did you mean 'address'?)",
        "site.yaml:20 devices[0].source.overrides.current_b: address cannot be null "
        "(give a value or leave it out)",
    ]


def test_devices_sharing_a_connection_must_agree_on_it() -> None:
    meter = "      profile: generic_power_meter_3p\n"
    text = HEAD + "".join(
        [
            device("a", "      type: modbus_rtu\n      port: /dev/ttyUSB0\n" + meter),
            device(
                "b",
                "      type: modbus_rtu\n"
                "      port: /dev/ttyUSB0\n"
                "      baudrate: 19200\n"
                "      parity: E\n"
                "      unit_id: 2\n" + meter,
            ),
            device(
                "c", "      type: modbus_tcp\n      host: 192.0.2.30\n      port: 4001\n" + meter
            ),
            device(
                "d",
                "      type: modbus_rtu_over_tcp\n"
                "      host: 192.0.2.30\n"
                "      port: 4001\n"
                "      max_registers_per_read: 1\n" + meter,
            ),
        ]
    )
    assert problems_of(text) == [
        "site.yaml:20 devices[1].source.baudrate: baudrate 19200 differs from 9600 of device "
        "'a' on /dev/ttyUSB0 (devices on one serial port share its line settings)",
        "site.yaml:21 devices[1].source.parity: parity E differs from N of device 'a' on "
        "/dev/ttyUSB0 (devices on one serial port share its line settings)",
        "site.yaml:38 devices[3].source.type: modbus_rtu_over_tcp differs from modbus_tcp of "
        "device 'c' on 192.0.2.30:4001 (one gateway port speaks one framing)",
        "site.yaml:41 devices[3].source.max_registers_per_read: register 'voltage_a' spans 2 "
        "registers and cannot be split across reads: max_registers_per_read must be at least 2",
    ]


def test_apply_overrides_changes_only_the_fields_written() -> None:
    pm = load_profile("generic_power_meter_3p")
    fixed = apply_overrides(
        pm,
        {
            "energy_import": RegisterOverride(word_order="CDAB", scale=0.1),
            "frequency": RegisterOverride.model_validate({"min": None, "max": None}),
        },
    )
    e, f = fixed.register("energy_import"), fixed.register("frequency")
    assert (e.word_order, e.scale, e.address, e.type) == ("CDAB", 0.1, 30, "uint32")
    assert e.counter
    assert (f.min, f.max, f.address) == (None, None, 18)
    others = [r for r in fixed.registers if r.metric not in ("energy_import", "frequency")]
    assert others == [r for r in pm.registers if r.metric not in ("energy_import", "frequency")]
    assert apply_overrides(pm, {}) is pm

    with pytest.raises(ProfileError) as info:
        apply_overrides(pm, {"voltage_x": RegisterOverride(scale=2)})
    assert info.value.problems == [
        "override of unknown metric 'voltage_x': profile 'generic_power_meter_3p' has no such "
        "register (did you mean 'voltage_c'?)"
    ]


def test_misspelt_source_field_gets_a_suggestion_from_its_own_source_type() -> None:
    text = HEAD + device(
        "m1",
        "      type: modbus_rtu\n"
        "      port: /dev/ttyUSB0\n"
        "      baudrat: 19200\n"
        "      profile: generic_power_meter_3p\n",
    )
    assert problems_of(text) == [
        "site.yaml:12 devices[0].source.baudrat: unknown field 'baudrat' (did you mean 'baudrate'?)"
    ]
