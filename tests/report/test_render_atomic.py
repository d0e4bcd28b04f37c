"""Report files are replaced atomically (a full disk leaves the previous report whole) and
summary.md cannot be broken by user strings."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from automc.errors import AutomcError
from automc.report import FILES, ReportData, render
from automc.search.storage import TrialRecord


def _data(study: str = "demo", model: str = "resnet20", padding: int = 0) -> ReportData:
    trials = tuple(
        TrialRecord(
            number=i,
            state="COMPLETE",
            values={"acc": 0.5 + i / 100, "macs": 1e6 * (10 - i % 10)},
            plan={"criterion": "l1", "layers": {"conv1": {"keep_ratio": 0.5}}},
            cost={"macs": 1e6 * (10 - i % 10), "params": 1e4},
            failure="x" * padding,
        )
        for i in range(12)
    )
    meta = {
        "model": model,
        "dataset": "digits",
        "controller": "random",
        "seed": 0,
        "objectives": [{"name": "acc", "direction": "maximize"}, {"name": "macs", "direction": "minimize"}],
        "limits": {"macs": 9e6},
        "layer_order": ["conv1"],
    }
    return ReportData(
        study_name=study, meta=meta, objectives=(("acc", "maximize"), ("macs", "minimize")), trials=trials
    )


@pytest.fixture
def small_disk(tmp_path: Path):
    """A real tmpfs a third larger than one report (needs root and mount; skipped elsewhere)."""
    render(_data(), tmp_path / "measure")
    size_kib = sum(p.stat().st_size for p in (tmp_path / "measure").iterdir()) * 4 // 3 // 1024
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_kib}k", "tmpfs", str(mount)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


def test_full_disk_leaves_the_previous_report_intact(small_disk: Path) -> None:
    out = small_disk / "run"
    render(_data(), out)
    before = {name: (out / name).read_bytes() for name in FILES}
    with pytest.raises(AutomcError) as e:
        render(_data(padding=200_000), out)  # a second copy does not fit
    message = str(e.value)
    assert message.startswith(f"cannot write the report into {out}: No space left on device")
    assert "\n" not in message
    assert {name: (out / name).read_bytes() for name in FILES} == before
    assert sorted(p.name for p in out.iterdir()) == sorted(FILES), "no partial file is left behind"


def test_summary_escapes_user_strings(tmp_path: Path) -> None:
    render(_data(study="a|b\n# `x` <b>", model="m|odel`"), tmp_path)
    text = (tmp_path / "summary.md").read_text(encoding="utf-8")
    first = text.splitlines()[0]
    assert first == "# automc report: a\\|b \\# \\`x\\` &lt;b&gt;"
    assert "- model: m\\|odel\\`, dataset: digits" in text
    assert "<b>" not in text
