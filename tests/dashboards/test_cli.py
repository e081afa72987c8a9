"""``facmon grafana --help`` and ``facmon grafana export``, as a user runs them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dashboards.model import Dashboard
from facmon.cli import main


def _help(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    with pytest.raises(SystemExit) as done:
        main([*args, "--help"])
    assert done.value.code == 0
    return " ".join(capsys.readouterr().out.split())


def test_help_explains_each_command(capsys: pytest.CaptureFixture[str]) -> None:
    top = _help(capsys, "grafana")
    assert "export" in top and "push" in top and "generated from the site config" in top
    export = _help(capsys, "grafana", "export")
    for words in (
        "DIR/provisioning",
        "/etc/grafana/provisioning",
        "environment variables",
        "Without --config: the demo site",
        "--dashboards-path",
    ):
        assert words in export, words
    push = _help(capsys, "grafana", "push")
    for words in (
        "--url",
        "--token-env",
        "GRAFANA_TOKEN",
        "never printed",
        "Safe to run again",
        "--influx-url",
    ):
        assert words in push, words


def test_export_writes_the_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["grafana", "export", str(tmp_path / "out")]) == 0
    out = capsys.readouterr()
    written = [Path(line) for line in out.out.split()]
    assert len(written) == 7 and all(p.is_file() for p in written)
    assert "INFLUX_TOKEN" in out.err
    for p in written:
        if p.suffix == ".json":
            Dashboard.model_validate(json.loads(p.read_text(encoding="utf-8")))


def test_export_reports_a_broken_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    site = tmp_path / "site.yaml"
    site.write_text("site: {id: x, name: X}\nbuildings: []\n", encoding="utf-8")
    assert main(["grafana", "export", str(tmp_path / "out"), "--config", str(site)]) == 2
    assert "site.yaml:2" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
