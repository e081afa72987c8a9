"""The ``facmon`` command as a user runs it: help texts, config check and sample."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from facmon.cli import build_parser, main


def _commands(parser: argparse.ArgumentParser, prefix: list[str]) -> list[list[str]]:
    """Every command and sub-command the parser knows, so a new one is covered by itself."""
    out = [prefix]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                out += _commands(sub, [*prefix, name])
    return out


COMMANDS = _commands(build_parser(), [])


@pytest.mark.parametrize("cmd", COMMANDS, ids=lambda c: " ".join(c) or "facmon")
def test_every_command_explains_itself(cmd: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main([*cmd, "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "usage: facmon" in out
    assert len(out.splitlines()) >= 4


def test_sample_passes_the_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "sample"]) == 0
    sample = capsys.readouterr().out
    f = tmp_path / "site.yaml"
    f.write_text(sample, encoding="utf-8")
    assert main(["config", "check", str(f)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"{f}: OK"
    # The sample turns the shipped default rules on: the check lists them.
    assert all(line.startswith("  default rule ") for line in out[1:]) and len(out) > 1


def test_check_reports_every_problem_with_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["config", "sample"]) == 0
    lines = capsys.readouterr().out.splitlines()
    # Break two things: a unit id out of range and an unknown profile.
    unit = next(i for i, ln in enumerate(lines) if "unit_id:" in ln)
    lines[unit] = lines[unit].split("unit_id:")[0] + "unit_id: 300"
    prof = next(i for i, ln in enumerate(lines) if "profile: generic_water_meter" in ln)
    lines[prof] = lines[prof].replace("generic_water_meter", "no_such_meter")
    f = tmp_path / "bad.yaml"
    f.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert main(["config", "check", str(f)]) == 1
    err = capsys.readouterr().err
    assert f"bad.yaml:{unit + 1} devices[0].source.unit_id: must be 1..247" in err
    want = f"bad.yaml:{prof + 1} devices[2].source.profile: no shipped profile 'no_such_meter'"
    assert want in err
    assert "2 problems" in err


def test_parser_builds_without_importing_heavy_modules() -> None:
    # `facmon --help` must stay fast: subcommands import their packages lazily.
    code = "import sys, facmon.cli; facmon.cli.build_parser(); print('duckdb' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    assert build_parser().prog == "facmon"
