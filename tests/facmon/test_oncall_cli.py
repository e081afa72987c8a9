"""``facmon oncall who|schedule|gaps`` as a user runs them, on a site file and on the demo."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from facmon.cli import main

SITE = """\
site: {id: s1, name: Site, timezone: Europe/Berlin}
buildings:
  - {id: b1, name: B1, floor_area_m2: 100, floors: 2}
oncall:
  people:
    - {id: wang, name: 王强 Wang Qiang, phone: "+86 138 0000 0002", email: wq@example.com}
    - {id: li, name: 李娜 Li Na}
    - {id: chen, name: Chen}
  fallback: FALLBACK
  rotations:
    - id: eng
      name: Engineering
      members: [li, wang]
      handoff: weekly
      start: 2026-03-02
      active: {days: [mon, tue, wed, thu, fri]}
    - id: lifts
      name: Lifts
      members: [chen]
      handoff: daily
      handoff_time: "08:00"
      start: 2026-03-02
  overrides:
    - person: li
      start: "2026-03-26 18:00"
      end: "2026-03-27 08:00"
      rotation: eng
      reason: swap
"""


def site(tmp_path: Path, fallback: str = "chen") -> Path:
    path = tmp_path / "site.yaml"
    path.write_text(SITE.replace("FALLBACK", fallback), encoding="utf-8")
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.mark.parametrize("action", ["who", "schedule", "gaps"])
def test_each_action_explains_itself(action: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["oncall", action, "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert f"usage: facmon oncall {action}" in out
    assert "--config" in out and "--rotation" in out


def test_who_prints_person_source_until_and_contacts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = str(site(tmp_path))
    rc, out, _ = run(
        capsys, "oncall", "who", "--config", cfg, "--rotation", "eng", "--at", "2026-03-25 10:00"
    )

    assert rc == 0
    lines = out.splitlines()
    assert lines[0] == (
        "王强 Wang Qiang (wang) is on call in rotation eng at Wed 2026-03-25 10:00 (Europe/Berlin)"
    )
    assert "  source  rotation eng (Engineering)" in lines
    # The weekday windows join across midnight: the shift runs from Monday's handoff.
    assert "  since   Mon 2026-03-23 09:00" in lines
    assert "  until   Thu 2026-03-26 18:00, then 李娜 Li Na (li) (override)" in lines
    assert "  phone   +86 138 0000 0002" in lines
    assert "  email   wq@example.com" in lines


def test_who_during_an_override_and_in_a_gap(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = str(site(tmp_path))
    rc, out, _ = run(
        capsys, "oncall", "who", "--config", cfg, "--rotation", "eng", "--at", "2026-03-26 23:00"
    )
    assert rc == 0
    flat = " ".join(out.split())
    assert "李娜 Li Na (li) is on call" in flat
    assert "source override of rotation eng, swap" in flat
    assert "until Fri 2026-03-27 08:00, then 王强 Wang Qiang (wang) (rotation)" in flat
    assert "contact none declared" in flat

    # Saturday: the weekday-only rotation does not cover; the fallback does.
    rc, out, _ = run(
        capsys, "oncall", "who", "--config", cfg, "--rotation", "eng", "--at", "2026-03-28 12:00"
    )
    assert rc == 0
    assert "Chen (chen) is on call" in out
    assert "fallback (no override or rotation covers this time)" in out
    # The DST change on Sunday night does not move Monday's start; Wang's week runs to 09:00.
    flat = " ".join(out.split())
    assert "until Mon 2026-03-30 00:00, then 王强 Wang Qiang (wang) (rotation)" in flat


def test_who_with_nobody_on_call_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = site(tmp_path, fallback="null")
    rc, out, _ = run(
        capsys, "oncall", "who", "--config", str(path), "--rotation", "eng", "--at", "2026-03-28"
    )
    assert rc == 1
    assert out.startswith("Nobody is on call in rotation eng at Sat 2026-03-28 00:00")
    assert "nobody: no override or rotation covers this time and there is no oncall.fallback" in out


def test_schedule_lists_shifts_per_rotation(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = str(site(tmp_path))
    rc, out, _ = run(
        capsys, "oncall", "schedule", "--config", cfg, "--from", "2026-03-26 12:00", "--days", "2"
    )

    assert rc == 0
    assert out.splitlines()[0] == (
        "On-call schedule Thu 2026-03-26 12:00 to Sat 2026-03-28 12:00 (Europe/Berlin)"
    )
    eng = out.split("rotation eng (Engineering)\n")[1].split("\n\n")[0].splitlines()
    assert [" ".join(line.split()) for line in eng[1:]] == [
        "Thu 2026-03-26 12:00 Thu 2026-03-26 18:00 rotation 王强 Wang Qiang (wang)",
        "Thu 2026-03-26 18:00 Fri 2026-03-27 08:00 override 李娜 Li Na (li) [swap]",
        "Fri 2026-03-27 08:00 Sat 2026-03-28 00:00 rotation 王强 Wang Qiang (wang)",
        "Sat 2026-03-28 00:00 Sat 2026-03-28 12:00 fallback Chen (chen)",
    ]
    assert "rotation lifts (Lifts)" in out


def test_gaps_warn_and_exit_1_only_without_a_fallback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["oncall", "gaps", "--from", "2026-03-23", "--days", "14"]
    rc, out, _ = run(capsys, *args, "--config", str(site(tmp_path)))
    assert rc == 0
    assert "rotation eng (Engineering): 2 gaps" in out
    # The weekend across the DST change is an hour shorter: 47 h.
    weekend = "Sat 2026-03-28 00:00 to Mon 2026-03-30 00:00  (47 h)"
    assert f"{weekend}  fallback Chen (chen) is paged" in out
    assert "rotation lifts (Lifts): covered throughout" in out
    assert "The fallback takes every gap" in out

    rc, out, _ = run(capsys, *args, "--config", str(site(tmp_path, fallback="null")))
    assert rc == 1
    assert "(47 h)  NOBODY is paged" in out
    assert "WARNING: 2 gaps with nobody to page" in out


def test_bad_arguments_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = str(site(tmp_path))
    rc, _, err = run(capsys, "oncall", "who", "--config", cfg, "--at", "tomorrowish")
    assert rc == 2
    assert "--at: expected 'now', HH:MM, YYYY-MM-DD" in err
    rc, _, err = run(capsys, "oncall", "gaps", "--config", cfg, "--rotation", "plumbing")
    assert rc == 2
    assert "no rotation 'plumbing'; rotations: eng, lifts" in err
    bad = tmp_path / "bad.yaml"
    bad.write_text(SITE.replace("FALLBACK", "chen").replace("[li, wang]", "[li, zhao]"), "utf-8")
    rc, _, err = run(capsys, "oncall", "who", "--config", str(bad))
    assert rc == 2
    assert "bad.yaml:13 oncall.rotations[0].members[1]: unknown person 'zhao'" in err


def test_without_config_it_answers_for_the_demo_site(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "facmon", "oncall", "who", "--at", "2026-11-25 12:00"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "no --config: on-call of the demo site" in done.stderr
    assert done.stdout.startswith("王强 Wang Qiang (wang-qiang) is on call at Wed 2026-11-25 12:00")
    assert "rotation engineering (工程部 值班 / Engineering on-call)" in done.stdout
    assert re.search(
        r"until\s+Mon 2026-11-30 09:00, then 李娜 Li Na \(li-na\) \(rotation\)", done.stdout
    )
