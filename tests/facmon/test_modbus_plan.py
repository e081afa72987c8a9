"""``facmon modbus plan DEVICE --config FILE`` as a user runs it: the transport, the reads one
poll sends and what they save over one request per field. Nothing is sent to any device."""

from __future__ import annotations

from pathlib import Path

import pytest

from facmon.cli import main

SITE = """\
site: {id: s1, name: Site}
buildings:
  - {id: tower-a, name: Tower A, floor_area_m2: 1000, floors: 10}
devices:
  - id: meter-12f
    name: A座 12F 分表
    kind: power_meter
    location: {building: tower-a, floor: 12F}
    source:
      type: modbus_rtu_over_tcp
      host: 192.0.2.30
      port: 4001
      unit_id: 3
      profile: generic_power_meter_3p
  - id: meter-13f
    name: A座 13F 分表
    kind: power_meter
    location: {building: tower-a, floor: 13F}
    source:
      type: modbus_rtu_over_tcp
      host: 192.0.2.30
      port: 4001
      unit_id: 4
      profile: generic_power_meter_3p
      overrides:
        energy_import: {word_order: CDAB, address: 100}
      max_registers_per_read: 16
  - id: lift-1
    name: 1号梯
    kind: elevator
    location: {building: tower-a}
    source:
      type: modbus_rtu
      port: /dev/ttyUSB0
      parity: E
      unit_id: 7
      profile: elevator_gbt24476
      one_request_per_field: true
"""


@pytest.fixture
def site(tmp_path: Path) -> Path:
    path = tmp_path / "site.yaml"
    path.write_text(SITE, encoding="utf-8")
    return path


def plan_of(site: Path, device: str, capsys: pytest.CaptureFixture[str]) -> str:
    assert main(["modbus", "plan", device, "--config", str(site)]) == 0
    return capsys.readouterr().out


def test_gateway_meter_is_read_in_one_request(
    site: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert plan_of(site, "meter-12f", capsys) == (
        "device     meter-12f (A座 12F 分表)\n"
        "transport  modbus_rtu_over_tcp 192.0.2.30:4001 unit 3\n"
        "profile    generic_power_meter_3p\n"
        "limits     125 registers / 2000 bits per read, gaps of up to 10 registers read through\n"
        "\n"
        "read  fc  table     start  count  metrics\n"
        "   1   3  holding       0     32  voltage_a, voltage_b, voltage_c, current_a, current_b,"
        " current_c,\n"
        "                                  active_power, reactive_power, power_factor, "
        "frequency,\n"
        "                                  energy_import\n"
        "\n"
        "1 read, 32 registers for 11 fields (vs 11 requests one per field)\n"
    )


def test_overrides_and_read_limits_show_in_the_plan(
    site: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = plan_of(site, "meter-13f", capsys)
    assert out.splitlines() == [
        "device     meter-13f (A座 13F 分表)",
        "transport  modbus_rtu_over_tcp 192.0.2.30:4001 unit 4",
        "profile    generic_power_meter_3p (overrides: energy_import)",
        "limits     16 registers / 2000 bits per read, gaps of up to 10 registers read through",
        "",
        "read  fc  table     start  count  metrics",
        "   1   3  holding       0     16  voltage_a, voltage_b, voltage_c, current_a, current_b,"
        " current_c,",
        "                                  active_power, reactive_power",
        "   2   3  holding      16      4  power_factor, frequency",
        "   3   3  holding     100      2  energy_import",
        "",
        "3 reads, 22 registers for 11 fields (vs 11 requests one per field)",
    ]


def test_one_request_per_field_on_a_serial_bus(
    site: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = plan_of(site, "lift-1", capsys).splitlines()
    assert lines[1] == "transport  modbus_rtu /dev/ttyUSB0 9600 8E1 unit 7"
    assert lines[3] == "limits     one request per field"
    assert lines[6] == "   1   3  holding       0      1  service_mode"
    assert lines[-1] == "12 reads, 15 registers for 12 fields (vs 12 requests one per field)"


def test_unknown_device_lists_the_known_ones(
    site: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["modbus", "plan", "meter-14f", "--config", str(site)]) == 2
    err = capsys.readouterr().err
    assert err == (
        f"{site}: no device 'meter-14f' (did you mean 'meter-13f'?); "
        "devices: meter-12f, meter-13f, lift-1\n"
    )


def test_config_problems_are_printed_instead_of_a_plan(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(SITE.replace("word_order: CDAB", "word_order: ACBD"), encoding="utf-8")
    assert main(["modbus", "plan", "meter-13f", "--config", str(bad)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "bad.yaml:26 devices[1].source.overrides.energy_import.word_order: must be one of" in (
        captured.err
    )


@pytest.mark.parametrize("cmd", [["modbus"], ["modbus", "plan"]])
def test_modbus_commands_explain_themselves(
    cmd: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        main([*cmd, "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: facmon modbus")
    if cmd[-1] == "plan":
        assert "DEVICE" in out and "--config" in out and "40001" in out


def test_the_samples_commented_gateway_example_works_once_uncommented(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from config import sample_config

    lines = sample_config().splitlines()
    start = lines.index("  # - id: tower-a-meter-12f")
    end = next(i for i in range(start, len(lines)) if not lines[i].startswith("  # "))
    example = [ln for ln in lines[start:end] if ln.startswith("  # ")]
    # The example is the two gateway meters; the serial variant after them is a fragment.
    stop = next(i for i, ln in enumerate(example) if ln.startswith("  # A bus on"))
    uncommented = ["  " + ln[4:] for ln in example[:stop]]
    site = tmp_path / "site.yaml"
    site.write_text("\n".join(lines[:start] + uncommented + lines[end:]) + "\n", "utf-8")

    assert main(["config", "check", str(site)]) == 0
    capsys.readouterr()
    out = plan_of(site, "tower-a-meter-13f", capsys).splitlines()
    assert out[1] == "transport  modbus_rtu_over_tcp 192.0.2.30:4001 unit 4"
    assert out[2] == "profile    generic_power_meter_3p (overrides: energy_import)"
    assert out[-1] == "2 reads, 32 registers for 11 fields (vs 11 requests one per field)"
