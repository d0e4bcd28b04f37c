"""The bad-input corpus (``tests/data/bad/cases.yaml``) through the real CLI.

Every malformed file, flag or name must end in exit code 2 with exactly one line on
stderr naming the file/flag and the problem, no traceback, and no change to an existing
run folder (study storage + report) that the command points at.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from automc.cli import main
from automc.pipeline import search
from automc.testing.search import TINY_SEARCH

BAD = Path(__file__).parent / "data" / "bad"
MANIFEST = yaml.safe_load((BAD / "cases.yaml").read_text(encoding="utf-8"))
CASES: list[dict[str, Any]] = MANIFEST["cases"]
SEARCH_ARGS = {
    **TINY_SEARCH,
    "finetune_top": 0,
    "export_onnx": False,
}


class Payload:
    """Unpickling this runs ``touch <marker>``: the marker file proves the payload ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.marker}",))


def write_payload(path: Path, marker: Path) -> None:
    """A "weights" file whose unpickling would run a shell command."""
    with path.open("wb") as f:
        pickle.dump({"conv1.weight": Payload(marker)}, f)


@pytest.fixture(scope="module")
def prebuilt(home: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished 2-trial search (study.db + report) matching the manifest's search prefix."""
    out = tmp_path_factory.mktemp("prebuilt") / "run"
    search(trials=2, out=out, seed=0, **SEARCH_ARGS)
    assert (out / "study.db").is_file() and (out / "index.html").is_file()
    return out


def snapshot(folder: Path) -> dict[str, tuple[str, int]]:
    """relative path -> (sha256, mtime_ns) of every file under ``folder``."""
    return {
        str(p.relative_to(folder)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def expand(argv: list[str], *, tmp: Path, run: Path) -> list[str]:
    out: list[str] = []
    for item in argv:
        if item.startswith("{") and item[1:-1] in MANIFEST["prefixes"]:
            out.extend(expand(MANIFEST["prefixes"][item[1:-1]], tmp=tmp, run=run))
        else:
            out.append(item.replace("{bad}", str(BAD)).replace("{tmp}", str(tmp)).replace("{run}", str(run)))
    return out


def test_manifest_is_well_formed() -> None:
    assert MANIFEST["schema"] == "automc/test-bad-inputs" and MANIFEST["version"] == 1
    ids = [c["id"] for c in CASES]
    assert len(ids) == len(set(ids)) >= 25
    for case in CASES:
        assert set(case) <= {"id", "argv", "expect", "subprocess"}, case["id"]
        assert case["expect"].strip(), case["id"]
    referenced = {a.split("{bad}/")[1].split("/")[0] for c in CASES for a in c["argv"] if "{bad}/" in a}
    on_disk = {p.name for p in BAD.iterdir() if p.name != "cases.yaml"}
    assert referenced == on_disk, "every corpus file is used by a case and every case file exists"


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_bad_input_is_one_line_exit_2_and_changes_nothing(
    case: dict[str, Any], prebuilt: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    shutil.copytree(prebuilt, run)
    (tmp_path / "empty").mkdir()
    marker = tmp_path / "pwned"
    write_payload(tmp_path / "payload.pt", marker)
    before = snapshot(run)
    argv = expand(case["argv"], tmp=tmp_path, run=run)
    if case.get("subprocess"):
        proc = subprocess.run(
            [sys.executable, "-m", "automc", *argv],
            capture_output=True,
            text=True,
            timeout=240,
            env={**os.environ, "PYTHONWARNINGS": "ignore"},
        )
        code, out, err = proc.returncode, proc.stdout, proc.stderr
    else:
        code = main(argv)
        out, err = capfd.readouterr()
    lines = err.splitlines()
    assert code == 2, (case["id"], err)
    assert len(lines) == 1, (case["id"], err)
    assert lines[0].startswith("automc"), lines[0]
    expect = case["expect"].replace("{bad}", str(BAD)).replace("{tmp}", str(tmp_path))
    assert expect in lines[0], (case["id"], lines[0])
    assert "Traceback" not in out + err
    assert not marker.exists(), "a pickle payload ran"
    assert snapshot(run) == before, "a rejected command changed the existing run folder"


def test_load_compressed_never_runs_a_pickle_payload(tmp_path: Path) -> None:
    import torch

    from automc.compress import load_compressed
    from automc.errors import AutomcError

    marker = tmp_path / "pwned"
    path = tmp_path / "model.pt"
    torch.save({"state_dict": {}, "plan": "{}", "model": Payload(marker)}, path)
    with pytest.raises(AutomcError) as e:
        load_compressed(path)
    assert str(path) in str(e.value) and "\n" not in str(e.value)
    assert not marker.exists(), "a pickle payload ran"
