"""The wheel: built from this checkout, installed into a fresh venv, run from outside the checkout.

The fresh venv gets no packages of its own but automc: a ``.pth`` file, written after the
install, puts the development venv's site-packages on its path for torch and the other
dependencies (offline, no second torch). A ``.pth`` line only adds a folder to
``sys.path``; the ``.pth`` files inside that folder are not run, so the development venv's
editable automc stays inactive and ``import automc`` finds the installed wheel.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from automc.schema.hw_profile import SHIPPED_CPU_PROFILES

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ("automc", "search_spaces", "hw_profiles", "pyproject.toml", "setup.py", "README.md")


def _run(
    argv: list[str], *, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False)


def _checked(argv: list[str], *, cwd: Path, env: dict[str, str] | None = None) -> str:
    done = _run(argv, cwd=cwd, env=env)
    assert done.returncode == 0, f"{argv} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


class Installed:
    """A fresh venv with the built wheel installed, and a folder outside the checkout to run in."""

    def __init__(self, *, venv: Path, cwd: Path, home: Path) -> None:
        self.venv = venv
        self.cwd = cwd
        self.env = {
            k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")
        }
        self.env.update(AUTOMC_HOME=str(home), OMP_NUM_THREADS="1", PYTHONNOUSERSITE="1")

    @property
    def python(self) -> str:
        return str(self.venv / "bin" / "python")

    def automc(self, *args: str) -> subprocess.CompletedProcess[str]:
        return _run([str(self.venv / "bin" / "automc"), *args], cwd=self.cwd, env=self.env)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    work = tmp_path_factory.mktemp("wheel")
    src = work / "src"
    src.mkdir()
    skip = shutil.ignore_patterns("__pycache__", "*.egg-info", "build")
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name, ignore=skip)
        else:
            shutil.copy2(ROOT / name, src / name)
    pip = [sys.executable, "-m", "pip"]
    _checked(
        [
            *pip,
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "-w",
            str(work / "dist"),
            ".",
        ],
        cwd=src,
    )
    (wheel,) = (work / "dist").glob("automc-*.whl")

    venv = work / "venv"
    _checked([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=work)
    fresh = str(venv / "bin" / "python")
    _checked([*pip, "--python", fresh, "install", "-q", "--no-deps", "--no-index", str(wheel)], cwd=work)
    site = _checked([fresh, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], cwd=work).strip()
    (Path(site) / "automc_test_dependencies.pth").write_text(
        sysconfig.get_path("purelib") + "\n", encoding="utf-8"
    )

    cwd = work / "elsewhere"
    cwd.mkdir()
    return Installed(venv=venv, cwd=cwd, home=work / "home")


def test_the_wheel_ships_the_spaces_and_profiles_inside_the_package(installed: Installed) -> None:
    probe = (
        "import automc, automc.resources as r; print(automc.__file__); "
        "print(r.find_space('joint')); print(r.find_profile('cpu-x86-2core-ort')); "
        "print(','.join(r.shipped_spaces())); print(','.join(r.shipped_profiles()))"
    )
    out = _checked([installed.python, "-c", probe], cwd=installed.cwd, env=installed.env).splitlines()
    package = Path(out[0]).parent
    assert package.is_relative_to(installed.venv), f"automc imported from {package}, not the fresh venv"
    assert Path(out[1]) == package / "search_spaces" / "joint.yaml"
    assert Path(out[2]) == package / "hw_profiles" / "cpu-x86-2core-ort.yaml"
    assert out[3].split(",") == sorted(p.stem for p in (ROOT / "search_spaces").glob("*.yaml"))
    assert out[4].split(",") == sorted(p.stem for p in (ROOT / "hw_profiles").glob("*.yaml"))
    assert (package / "py.typed").is_file()


def test_the_installed_cli_lists_and_searches_with_the_shipped_defaults(installed: Installed) -> None:
    listed = installed.automc("list", "models")
    assert listed.returncode == 0, listed.stderr
    assert "test_tiny" in listed.stdout

    # the default space (joint) and profile (auto: a shipped CPU profile) are the shipped files
    out = installed.cwd / "run"
    argv = ["search", "--model", "test_tiny", "--dataset", "synthetic", "--budget", "flops=0.8"]
    argv += ["--trials", "3", "--finetune-top", "0", "--proxy", "adaptive_bn", "--no-onnx", "--quiet"]
    done = installed.automc(*argv, "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert (out / "index.html").is_file()
    config = (out / "config.yaml").read_text(encoding="utf-8")
    assert "space: joint" in config and "profile: auto" in config
    meta = json.loads((out / "pareto.json").read_text(encoding="utf-8"))["meta"]
    assert meta["profile"] in SHIPPED_CPU_PROFILES  # what auto resolved to
    with (out / "trials.csv").open(encoding="utf-8") as f:
        trials = list(csv.DictReader(f))
    assert len(trials) == 3
    # the shipped profile priced every candidate's latency
    assert all(float(t["cost_latency_ms"]) > 0 for t in trials)


@pytest.mark.parametrize(
    ("flag", "needle"),
    [("--space", "unknown search space 'nosuch'"), ("--profile", "unknown device profile 'nosuch'")],
)
def test_a_name_that_is_not_shipped_exits_2_with_one_line(
    installed: Installed, flag: str, needle: str
) -> None:
    argv = ["search", "--model", "test_tiny", "--dataset", "synthetic", "--trials", "1", "--quiet"]
    done = installed.automc(*argv, flag, "nosuch", "--out", str(installed.cwd / "bad"))
    assert done.returncode == 2
    err = done.stderr.strip()
    assert len(err.splitlines()) == 1 and needle in err, err
