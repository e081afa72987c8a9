"""Shipped profiles of real meter models: they load, name their source, use the generic metric
names and units, and decode known register words to the values the meter documents.

The words in the decoding tables are hand-encoded IEEE-754 float32 bit patterns (sign, biased
exponent, mantissa; high word first), written out here rather than produced by the codec under
test. For example 230.0 = 1.796875 * 2**7: exponent 127 + 7 = 0x86, mantissa 0x660000, so the
bits are 0x43660000 and the registers [0x4366, 0x0000].
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from collector.codec import decode, decode_raw, quality_of
from collector.planner import plan
from collector.profile import ProfileLoader, available_profiles, load_profile, validate_profile
from store.reading import Quality

PROFILES_DIR = Path(__file__).parents[2] / "collector" / "profiles"
REAL = ["chint_dtsu666", "eastron_sdm120", "eastron_sdm630"]

# Units of facmon's power-meter metrics; real profiles must scale into these.
UNITS = {
    "voltage": "V",
    "current": "A",
    "active_power": "kW",
    "reactive_power": "kvar",
    "apparent_power": "kVA",
    "power_factor": "",
    "frequency": "Hz",
    "energy_import": "kWh",
    "energy_export": "kWh",
    "energy_reactive_import": "kvarh",
    "energy_reactive_export": "kvarh",
}
# Names beyond the generic profile's: per-phase power and power factor, line-to-line voltage,
# apparent power, mean and summed current, export and reactive energy, all built from the same
# stems.
EXTRA_METRICS = {
    *(
        f"{stem}_{phase}"
        for stem in ("active_power", "reactive_power", "apparent_power", "power_factor")
        for phase in "abc"
    ),
    "current_avg",
    "current_sum",
    "energy_reactive_import",
    "energy_reactive_export",
    "voltage_ab",
    "voltage_bc",
    "voltage_ca",
    "apparent_power",
    "energy_export",
}
EVERY_METER_HAS = {"voltage_a", "current_a", "active_power", "power_factor", "frequency"}


def _stem(metric: str) -> str:
    for stem in UNITS:
        if metric == stem or metric.startswith(stem + "_"):
            return stem
    raise AssertionError(f"no unit rule for metric {metric!r}")


def _header(name: str) -> str:
    lines = (PROFILES_DIR / f"{name}.yaml").read_text(encoding="utf-8").splitlines()
    return "\n".join(line for line in lines if line.startswith("#"))


@pytest.mark.parametrize("name", REAL)
def test_real_profile_loads_validates_and_names_its_source(name: str) -> None:
    assert name in available_profiles()
    profile = load_profile(name)
    assert profile.name == name
    assert profile.kind == "power_meter"
    assert validate_profile(profile) == []
    raw = yaml.load((PROFILES_DIR / f"{name}.yaml").read_text("utf-8"), Loader=ProfileLoader)
    assert validate_profile(raw) == []
    # The source document is named in the data and in the header comment, with the address
    # convention spelled out so nobody re-adds 30001 to an address.
    assert len(profile.source) > 40
    header = _header(name)
    assert "Source document" in header
    assert "0-based protocol address" in header


@pytest.mark.parametrize("name", REAL)
def test_real_profile_uses_generic_metric_names_and_units(name: str) -> None:
    generic = {r.metric for r in load_profile("generic_power_meter_3p").registers}
    profile = load_profile(name)
    metrics = {r.metric for r in profile.registers}
    assert metrics >= EVERY_METER_HAS
    assert "energy_import" in metrics
    assert not metrics - generic - EXTRA_METRICS, "metric names must follow the generic profile"
    for reg in profile.registers:
        assert reg.unit == UNITS[_stem(reg.metric)], reg.metric


@pytest.mark.parametrize("name", REAL)
def test_only_energy_registers_are_counters(name: str) -> None:
    for reg in load_profile(name).registers:
        assert reg.counter == reg.metric.startswith("energy_"), reg.metric
        if reg.counter:
            # Float counters: no integer wrap, so the collector must not expect a rollover.
            assert reg.type == "float32"
            assert reg.rollover is None


def test_sdm630_map_fits_in_one_eastron_request() -> None:
    # Eastron limits one request to 40 parameters (80 registers).
    regs = load_profile("eastron_sdm630").registers
    first = min(r.address for r in regs)
    end = max(r.address + r.count for r in regs)
    assert (first, end) == (0x0000, 0x0050)
    assert end - first <= 80
    assert {r.table for r in regs} == {"input"}
    # ... so its 29 parameters are one request under the default max_gap.
    assert len(regs) == 29 and len(plan(regs)) == 1


def test_dtsu666_reads_holding_registers_and_sdm_reads_input_registers() -> None:
    assert {r.table for r in load_profile("chint_dtsu666").registers} == {"holding"}
    assert {r.table for r in load_profile("eastron_sdm120").registers} == {"input"}


KNOWN_VALUES = [
    # (profile, metric, words, value): Eastron floats are SI units (W scaled to kW).
    ("eastron_sdm630", "voltage_a", [0x4366, 0x0000], 230.0),  # 30001
    ("eastron_sdm630", "current_c", [0x4104, 0x0000], 8.25),  # 30011: 8.25 = 1.03125 * 2**3
    ("eastron_sdm630", "active_power", [0x45C3, 0x5000], 6.25),  # 30053: 6250 W
    ("eastron_sdm630", "reactive_power", [0xC49C, 0x4000], -1.25),  # 30061: -1250 VAr
    ("eastron_sdm630", "frequency", [0x4248, 0x0000], 50.0),  # 30071
    ("eastron_sdm630", "energy_import", [0x4640, 0xE600], 12345.5),  # 30073
    ("eastron_sdm120", "current_a", [0x4120, 0x0000], 10.0),  # 30007
    ("eastron_sdm120", "active_power", [0x4496, 0x0000], 1.2),  # 30013: 1200 W
    ("eastron_sdm120", "power_factor", [0x3F80, 0x0000], 1.0),  # 30031
    # DTSU666 floats carry 0.1 V, 0.001 A, 0.1 W, 0.001 and 0.01 Hz units; energy in kWh.
    ("chint_dtsu666", "voltage_a", [0x450F, 0xC000], 230.0),  # 2006H: 2300.0
    ("chint_dtsu666", "current_a", [0x4643, 0x5000], 12.5),  # 200CH: 12500.0
    ("chint_dtsu666", "active_power", [0x4774, 0x2400], 6.25),  # 2012H: 62500.0 = 6250 W
    ("chint_dtsu666", "power_factor", [0x4475, 0x0000], 0.98),  # 202AH: 980.0
    ("chint_dtsu666", "frequency", [0x459C, 0x3000], 49.98),  # 2044H: 4998.0
    ("chint_dtsu666", "energy_import", [0x4640, 0xE600], 12345.5),  # 101EH
]


@pytest.mark.parametrize(("name", "metric", "words", "value"), KNOWN_VALUES)
def test_known_register_words_decode_to_documented_values(
    name: str, metric: str, words: list[int], value: float
) -> None:
    reg = load_profile(name).register(metric)
    assert decode(reg, words) == pytest.approx(value, rel=1e-9)
    assert quality_of(reg, decode_raw(reg, words)) is Quality.GOOD


def test_out_of_range_values_of_real_meters_are_bad() -> None:
    sdm = load_profile("eastron_sdm630")
    # 0x447A0000 = 1000.0: a power factor of 1000 is a garbled frame, not a measurement.
    pf = sdm.register("power_factor")
    assert quality_of(pf, decode_raw(pf, [0x447A, 0x0000])) is Quality.BAD
    dtsu = load_profile("chint_dtsu666")
    # Freq 0.0 reads as 0 Hz: outside 40..70 Hz, so BAD rather than a plausible sample.
    freq = dtsu.register("frequency")
    assert quality_of(freq, decode_raw(freq, [0x0000, 0x0000])) is Quality.BAD
