"""Pre-flight checks of a search (automc/pipeline/checks.py) and the near-chance threshold."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from automc.errors import AutomcError
from automc.pipeline import checks
from automc.pipeline.setup import near_chance


def test_near_chance_is_never_at_or_above_certainty() -> None:
    assert near_chance(10) == pytest.approx(0.2)
    assert near_chance(2) == pytest.approx(0.75)
    assert near_chance(3) == pytest.approx(2 / 3)
    with pytest.raises(AutomcError, match="1 class"):
        near_chance(1)


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("", "empty"),
        ("a/b", "path separator"),
        ("a\\b", "path separator"),
        ("..", "path separator"),
        ("a\nb", "control character"),
        ("a\u202eb", "control character"),
        ("x" * 256, "256 characters"),
    ],
)
def test_bad_study_names(name: str, problem: str) -> None:
    with pytest.raises(AutomcError, match=problem):
        checks.check_study_name(name)


def test_good_study_names() -> None:
    for name in ("resnet20-digits-optuna-tpe-s0", "x" * 255, "étude 1"):
        assert checks.check_study_name(name) == name


def test_storage_urls(tmp_path: Path) -> None:
    db = tmp_path / "ok.db"
    sqlite3.connect(db).close()
    assert checks.check_storage_url(f"sqlite:///{db}") == f"sqlite:///{db}"
    assert checks.check_storage_url(f"sqlite:///{tmp_path / 'new' / 'fresh.db'}")
    assert not (tmp_path / "new").exists(), "checking a storage must not create it"
    (tmp_path / "garbage.db").write_bytes(b"\x00" * 4096)
    before = (tmp_path / "garbage.db").read_bytes()
    with pytest.raises(AutomcError, match="is not a SQLite database"):
        checks.check_storage_url(f"sqlite:///{tmp_path / 'garbage.db'}")
    assert (tmp_path / "garbage.db").read_bytes() == before
    with pytest.raises(AutomcError, match="in-memory"):
        checks.check_storage_url("sqlite:///:memory:")
    with pytest.raises(AutomcError, match="not a valid storage URL"):
        checks.check_storage_url("postgresql://[::1")
    (tmp_path / "dir.log").mkdir()
    with pytest.raises(AutomcError, match="exists and is not a file"):
        checks.check_storage_url(str(tmp_path / "dir.log"))


def test_run_folder_keeps_other_studies_reports(tmp_path: Path) -> None:
    from automc.config import SearchConfig

    out = tmp_path / "out"
    assert checks.run_folder(out, "a") == out
    out.mkdir()
    SearchConfig().with_overrides(study="a").dump(out / "config.yaml")
    assert checks.run_folder(out, "a") == out
    assert checks.run_folder(out, "b") == out / "b"
    (out / "config.yaml").unlink()
    (out / "index.html").write_text("someone's report", encoding="utf-8")
    assert checks.run_folder(out, "a") == out / "a"
