"""Profiles: the shipped register maps load, and broken ones are refused with every problem."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from collector.profile import (
    Profile,
    ProfileError,
    Register,
    available_profiles,
    load_profile,
    validate_profile,
)

SHIPPED = [
    "chint_dtsu666",
    "eastron_sdm120",
    "eastron_sdm630",
    "elevator_gbt24476",
    "generic_outdoor_th",
    "generic_power_meter_3p",
    "generic_water_meter",
]


def profile_data(*registers: dict[str, Any], **top: Any) -> dict[str, Any]:
    return {"name": "t", "kind": "sensor", "registers": list(registers), **top}


def test_shipped_profiles_are_listed_and_load_cleanly() -> None:
    assert available_profiles() == SHIPPED
    for name in SHIPPED:
        p = load_profile(name)
        assert p.name == name
        assert validate_profile(p) == []
        assert load_profile(name) is p  # cached


def test_defaults_apply_to_registers_that_omit_them() -> None:
    water = load_profile("generic_water_meter")
    assert {r.word_order for r in water.registers} == {"CDAB"}
    assert {r.table for r in water.registers} == {"holding"}
    volume = water.register("volume")
    assert (volume.count, volume.counter, volume.scale, volume.unit) == (2, True, 0.001, "m3")
    assert volume.rollover == pytest.approx(2**32 * 0.001)


def test_yes_no_enum_names_stay_text() -> None:
    lift = load_profile("elevator_gbt24476")
    assert lift.register("entrapment").enum == {0: "no", 1: "yes", 255: "unknown"}
    assert lift.register("service_mode").enum is not None
    assert lift.register("service_mode").enum[2] == "inspection"  # type: ignore[index]


def test_yes_no_parsed_as_booleans_elsewhere_gets_a_clear_message() -> None:
    data = yaml.safe_load("{metric: x, address: 0, type: uint16, enum: {0: no, 1: yes}}")
    problems = validate_profile(profile_data(data))
    assert len(problems) == 1 and "quote" in problems[0] and "registers[0] (x)" in problems[0]


def test_a_valid_profile_has_no_problems() -> None:
    assert (
        validate_profile(
            profile_data(
                {"metric": "a", "address": 0, "type": "float32"},
                {"metric": "b", "address": 2, "type": "uint16"},
                {"metric": "c", "address": 0, "type": "bit", "table": "coil"},
                {"metric": "d", "address": 0, "type": "string", "length": 4, "table": "input"},
            )
        )
        == []
    )


@pytest.mark.parametrize(
    ("registers", "expected"),
    [
        (
            [
                {"metric": "a", "address": 0, "type": "float32"},
                {"metric": "b", "address": 1, "type": "uint16"},
            ],
            "register 'b' (holding 1) overlaps register 'a' (holding 0)",
        ),
        (
            [
                {"metric": "a", "address": 0, "type": "string", "length": 10},
                {"metric": "b", "address": 4, "type": "uint16"},
            ],
            "overlaps register 'a'",
        ),
        (
            [{"metric": "a", "address": 0, "type": "string"}],
            "type 'string' needs 'length'",
        ),
        (
            [{"metric": "a", "address": 0, "type": "float32", "max_rate": 0.5}],
            "'max_rate' applies to counters only",
        ),
        (
            [{"metric": "a", "address": 0, "type": "uint32", "length": 2}],
            "'length' applies to strings only",
        ),
        (
            [{"metric": "a", "address": 0, "type": "bit"}],
            "type 'bit' needs table coil or discrete, not holding",
        ),
        (
            [{"metric": "a", "address": 0, "type": "uint16", "table": "coil"}],
            "table coil holds bits",
        ),
        (
            [{"metric": "a", "address": 0, "type": "float16"}],
            "registers[0] (a).type: Input should be 'bit'",
        ),
        (
            [
                {"metric": "a", "address": 0, "type": "uint16"},
                {"metric": "a", "address": 5, "type": "uint16"},
            ],
            "duplicate metric 'a'",
        ),
        (
            [{"metric": "a", "address": 65535, "type": "uint32"}],
            "spans past the end",
        ),
        (
            [{"metric": "a", "address": 70000, "type": "uint16"}],
            "registers[0] (a).address: Input should be less than or equal to 65535",
        ),
        (
            [{"metric": "a", "address": 0, "type": "float32", "enum": {0: "x"}}],
            "'enum' needs an integer type",
        ),
        (
            [{"metric": "a", "address": 0, "type": "uint16", "min": 5, "max": 1}],
            "min 5.0 is above max 1.0",
        ),
        (
            [{"metric": "a", "address": 0, "type": "uint16", "scale": 0}],
            "scale 0",
        ),
        (
            [{"metric": "a", "address": 0, "type": "uint16", "colour": "red"}],
            "registers[0] (a).colour: Extra inputs are not permitted",
        ),
    ],
)
def test_problems_are_reported(registers: list[dict[str, Any]], expected: str) -> None:
    problems = validate_profile(profile_data(*registers))
    assert any(expected in p for p in problems), problems


def test_every_problem_is_reported_at_once() -> None:
    problems = validate_profile(
        profile_data(
            {"metric": "a", "address": 0, "type": "floaty"},
            {"metric": "b", "address": 0, "type": "float32"},
            {"metric": "c", "address": 1, "type": "uint16"},
            {"metric": "b", "address": 9, "type": "uint16"},
        )
    )
    assert len(problems) == 3, problems
    assert any("registers[0] (a).type" in p for p in problems)
    assert any("duplicate metric 'b'" in p for p in problems)
    assert any("overlaps" in p for p in problems)


def test_same_address_in_different_tables_is_fine() -> None:
    assert (
        validate_profile(
            profile_data(
                {"metric": "a", "address": 0, "type": "uint16", "table": "holding"},
                {"metric": "b", "address": 0, "type": "uint16", "table": "input"},
            )
        )
        == []
    )


def test_top_level_problems() -> None:
    assert validate_profile([1, 2]) == ["profile: expected a mapping, got list"]
    problems = validate_profile({"name": "x", "kind": "toaster", "registers": []})
    assert any(p.startswith("kind:") for p in problems)
    assert any(p.startswith("registers:") for p in problems)


def test_model_validation_refuses_inconsistent_profiles() -> None:
    with pytest.raises(ValueError, match="overlaps"):
        Profile.model_validate(
            profile_data(
                {"metric": "a", "address": 0, "type": "float32"},
                {"metric": "b", "address": 1, "type": "uint16"},
            )
        )


def test_load_from_a_path_is_cached_until_the_file_changes(tmp_path: Path) -> None:
    path = tmp_path / "meter.yaml"
    path.write_text(
        "name: meter\nkind: power_meter\nregisters:\n"
        "  - {metric: p, address: 0, type: float32, unit: kW}\n",
        encoding="utf-8",
    )
    first = load_profile(str(path))
    assert first.register("p").unit == "kW"
    assert load_profile(str(path)) is first
    path.write_text(
        "name: meter\nkind: power_meter\nregisters:\n"
        "  - {metric: p, address: 0, type: float32, unit: W}\n",
        encoding="utf-8",
    )
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10_000_000))
    assert load_profile(str(path)).register("p").unit == "W"


def test_load_errors_name_the_file_and_list_the_problems(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        "name: bad\nkind: sensor\nregisters:\n"
        "  - {metric: a, address: 0, type: float32}\n"
        "  - {metric: b, address: 1, type: uint16}\n"
        "  - {metric: c, address: 5, type: string}\n",
        encoding="utf-8",
    )
    with pytest.raises(ProfileError) as info:
        load_profile(str(path))
    assert str(path) in str(info.value)
    assert len(info.value.problems) == 2
    (tmp_path / "broken.yaml").write_text("name: [unclosed\n", encoding="utf-8")
    with pytest.raises(ProfileError, match="not valid YAML"):
        load_profile(str(tmp_path / "broken.yaml"))
    with pytest.raises(FileNotFoundError, match="generic_power_meter_3p"):
        load_profile("no_such_meter")
    with pytest.raises(FileNotFoundError):
        load_profile(str(tmp_path / "missing.yaml"))


def test_register_count() -> None:
    def r(**kw: Any) -> Register:
        return Register(metric="m", address=0, **kw)

    assert r(type="bit", table="coil").count == 1
    assert r(type="int16").count == 1
    assert r(type="float32").count == 2
    assert r(type="uint64").count == 4
    assert r(type="float64").count == 4
    assert r(type="string", length=7).count == 7
