"""``facmon notify test`` against a real HTTP receiver on loopback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.fixtures.receiver import Receiver

SITE = """
site: {{id: s1, name: 测试广场, language: zh-CN}}
buildings: [{{id: A, name: A座, floor_area_m2: 1000, floors: 3}}]
channels:
  - {{id: hook, type: webhook, url: "{url}", secret_env: HOOK_KEY}}
oncall:
  people:
    - {{id: li-na, name: 李娜, contacts: [hook], language: en}}
"""


def _run(cfg: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "facmon", "notify", "test", *args, "--config", str(cfg)],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", **env},
    )


def test_a_test_message_reaches_the_channel(tmp_path: Path, receiver: Receiver) -> None:
    cfg = tmp_path / "site.yaml"
    cfg.write_text(SITE.format(url=receiver.url), encoding="utf-8")
    done = _run(cfg, "hook", env={"HOOK_KEY": "k-123"})
    assert done.returncode == 0, done.stderr
    assert "hook (webhook): delivered to 李娜" in done.stdout
    [body] = receiver.bodies()
    assert body["kind"] == "test" and body["recipient"]["id"] == "li-na"
    assert body["language"] == "en"
    assert "k-123" not in done.stdout + done.stderr

    receiver.script = [400]
    refused = _run(cfg, "hook", "--to", "li-na", env={"HOOK_KEY": "k-123"})
    assert refused.returncode == 1
    assert "not delivered (will not succeed as configured)" in refused.stdout

    unknown = _run(cfg, "nope", env={"HOOK_KEY": "k-123"})
    assert unknown.returncode == 2 and "unknown channel 'nope' (known: hook)" in unknown.stderr
