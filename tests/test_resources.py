"""Finding search spaces and device profiles: a path wins, then ./search_spaces or ./hw_profiles, then shipped."""

from __future__ import annotations

from pathlib import Path

import pytest

from automc import resources
from automc.errors import AutomcError

ROOT = Path(__file__).resolve().parent.parent


def test_shipped_names_are_the_top_level_files() -> None:
    assert resources.shipped_spaces() == sorted(p.stem for p in (ROOT / "search_spaces").glob("*.yaml"))
    assert {"joint", "lowrank", "prune", "quant"} <= set(resources.shipped_spaces())
    assert resources.shipped_profiles() == sorted(p.stem for p in (ROOT / "hw_profiles").glob("*.yaml"))
    assert resources.shipped_profiles("automc/hw-profile") == [
        "cpu-x86-2core-avx2-ort",
        "cpu-x86-2core-ort",
        "cpu-x86-2core-torch",
        "cpu-x86-2core-zen1-ort",
        "cpu-x86-2core-zen5-ort",
    ]
    assert resources.shipped_profiles("automc/energy-table") == ["energy-45nm"]


def test_a_shipped_name_resolves_from_any_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    joint = resources.find_space("joint")
    assert (
        joint.name == "joint.yaml"
        and joint.read_bytes() == (ROOT / "search_spaces" / "joint.yaml").read_bytes()
    )
    profile = resources.find_profile("cpu-x86-2core-torch")
    assert profile.read_bytes() == (ROOT / "hw_profiles" / "cpu-x86-2core-torch.yaml").read_bytes()


def test_a_path_wins_and_is_returned_as_given(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "joint").write_text("not a space", encoding="utf-8")
    assert resources.find_space("joint") == Path("joint")
    # text that looks like a path is not looked up by name: its loader reports a missing file
    assert resources.find_space("missing/space.yaml") == Path("missing/space.yaml")
    assert resources.find_profile("prof.yml") == Path("prof.yml")


def test_the_current_directorys_folder_comes_before_the_shipped_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "search_spaces").mkdir()
    (tmp_path / "search_spaces" / "joint.yaml").write_text("local", encoding="utf-8")
    (tmp_path / "search_spaces" / "mine.yaml").write_text("local", encoding="utf-8")
    (tmp_path / "hw_profiles").mkdir()
    (tmp_path / "hw_profiles" / "measured.yaml").write_text("schema: automc/hw-profile\n", encoding="utf-8")
    assert resources.find_space("joint") == tmp_path / "search_spaces" / "joint.yaml"
    assert resources.find_space("mine") == tmp_path / "search_spaces" / "mine.yaml"
    assert resources.find_profile("measured") == tmp_path / "hw_profiles" / "measured.yaml"
    assert resources.profile_names("automc/hw-profile") == [
        "cpu-x86-2core-avx2-ort",
        "cpu-x86-2core-ort",
        "cpu-x86-2core-torch",
        "cpu-x86-2core-zen1-ort",
        "cpu-x86-2core-zen5-ort",
        "measured",
    ]
    assert "mine" not in resources.shipped_spaces()


def test_an_unknown_name_is_one_error_listing_the_known_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(AutomcError) as err:
        resources.find_space("jiont")
    msg = str(err.value)
    assert "unknown search space 'jiont'" in msg and f"known: {', '.join(resources.shipped_spaces())};" in msg
    assert "\n" not in msg
    with pytest.raises(AutomcError, match=r"unknown energy table 'energy-7nm' \(known: energy-45nm;"):
        resources.find_profile("energy-7nm", schema="automc/energy-table", what="energy table")
    with pytest.raises(
        AutomcError,
        match=r"unknown device profile 'gpu' \(known: cpu-x86-2core-avx2-ort, cpu-x86-2core-ort, cpu-x86-2core-torch, cpu-x86-2core-zen1-ort, cpu-x86-2core-zen5-ort;",
    ):
        resources.find_profile("gpu", schema="automc/hw-profile")
