"""Report rendering from a real Optuna SQLite storage (torch-free)."""

import csv
import json
import random
import shutil
import subprocess
from pathlib import Path

import optuna
import pytest

from automc.cli import main
from automc.pareto import non_dominated
from automc.report import FILES, ReportData, render

EVIL = "<script>window.__pwned=1</script>"


def make_study(tmp_path: Path, name: str = "demo", layer: str = "conv1", n: int = 25) -> str:
    url = f"sqlite:///{tmp_path / 'study.db'}"
    study = optuna.create_study(study_name=name, storage=url, directions=["maximize", "minimize"])
    study.set_user_attr(
        "automc",
        {
            "model": "resnet20",
            "dataset": "digits",
            "controller": "random",
            "seed": 0,
            "objectives": [
                {"name": "acc", "direction": "maximize"},
                {"name": "macs", "direction": "minimize"},
            ],
            "limits": {"macs": 30e6},
            "layer_order": [layer, "fc"],
        },
    )
    rng = random.Random(0)
    dist = optuna.distributions.FloatDistribution(0.2, 1.0)
    for i in range(n):
        keep = rng.uniform(0.2, 1.0)
        macs = 40e6 * keep**2
        acc = 0.99 - 0.5 * (1 - keep) ** 2 + rng.uniform(-0.02, 0.02)
        feasible = macs <= 30e6
        state = optuna.trial.TrialState.FAIL if i == 3 else optuna.trial.TrialState.COMPLETE
        study.add_trial(
            optuna.trial.create_trial(
                params={"keep": keep},
                distributions={"keep": dist},
                values=None if state == optuna.trial.TrialState.FAIL else [acc, macs],
                state=state,
                user_attrs={
                    "plan": {
                        "criterion": "l1",
                        "layers": {layer: {"keep_ratio": round(keep, 2), "w_bits": 8}},
                    },
                    "cost": {
                        "macs": macs,
                        "params": 2e5 * keep,
                        "energy_mj": 0.1 * keep,
                        "energy_compute_mj": 0.04 * keep,
                        "energy_memory_mj": 0.06 * keep,
                    },
                    "proxy": {"acc": acc},
                    "constraints": {"macs": macs / 30e6 - 1},
                    "feasible": feasible,
                    "failure": "proxy raised: boom" if i == 3 else "",
                },
            )
        )
    front = ReportData.from_study(study).pareto_numbers()
    study.set_user_attr(
        "base",
        {
            "test_acc": 0.98,
            "macs": 40e6,
            "latency_ms": 2.0,
            "latency_ms_measured": 2.1,
            "energy_compute_mj": 0.04,
            "energy_memory_mj": 0.06,
        },
    )
    study.set_user_attr(
        "winners",
        [
            {
                "trial": t,
                "proxy_acc": 0.9 - 0.01 * j,
                "test_acc": 0.95 - 0.02 * j,
                "test_acc_before": 0.9,
                "macs_measured": 20e6,
                "latency_ms": 1.0 + j,
                "latency_ms_measured": 1.05 + j,
                "energy_mj": 0.05,
                "energy_compute_mj": 0.02,
                "energy_memory_mj": 0.03,
                "plan": {"layers": {layer: {"keep_ratio": 0.5, "w_bits": 8, "rank": 3}}},
                "files": {"plan": "p.json"},
            }
            for j, t in enumerate(front[:3])
        ],
    )
    return url


def test_render_agrees_with_storage(tmp_path):
    url = make_study(tmp_path)
    data = ReportData.from_storage(url, "demo")
    paths = render(data, tmp_path / "rep")
    for name in FILES:
        assert paths[name].is_file() and paths[name].stat().st_size > 0
    study = optuna.load_study(study_name="demo", storage=url)
    rows = list(csv.DictReader(paths["trials.csv"].open()))
    assert [int(r["number"]) for r in rows] == [t.number for t in study.trials]
    assert rows[3]["state"] == "FAIL" and "boom" in rows[3]["failure"]
    # the front in pareto.json is the non-dominated set of the feasible complete trials, recomputed here
    feas = [t for t in study.trials if t.state.name == "COMPLETE" and t.user_attrs["feasible"]]
    expected = sorted(
        feas[i].number for i in non_dominated([t.values for t in feas], ["maximize", "minimize"])
    )
    body = json.loads(paths["pareto.json"].read_text())
    assert sorted(p["number"] for p in body["pareto"]) == expected
    assert all(p["plan"]["layers"] for p in body["pareto"])
    assert len(body["winners"]) == 3
    assert sum(r["pareto"] == "1" for r in rows) == len(expected)
    assert "trial" in paths["summary.md"].read_text()


def test_user_strings_are_escaped(tmp_path):
    url = make_study(tmp_path, name=f"study{EVIL}", layer=f"layer{EVIL}")
    paths = render(ReportData.from_storage(url, f"study{EVIL}"), tmp_path / "rep")
    text = paths["index.html"].read_text()
    assert EVIL not in text
    assert "study&lt;script&gt;" in text


def test_report_cli_and_bad_storage(tmp_path, capsys):
    url = make_study(tmp_path)
    assert main(["report", "--storage", url, "--study", "demo", "--out", str(tmp_path / "r")]) == 0
    assert (tmp_path / "r" / "index.html").is_file()
    assert (
        main(
            [
                "report",
                "--storage",
                str(tmp_path / "missing.db"),
                "--study",
                "demo",
                "--out",
                str(tmp_path / "x"),
            ]
        )
        == 2
    )
    assert main(["report", "--storage", url, "--study", "nope", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(line.startswith("automc: error:") for line in err)
    assert not (tmp_path / "missing.db").exists()


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (.ci/run installs it)")
def test_report_renders_in_headless_chromium_without_network(tmp_path):
    from PIL import Image, ImageStat

    url = make_study(tmp_path, name=f"s{EVIL}", layer=f"l{EVIL}")
    paths = render(ReportData.from_storage(url, f"s{EVIL}"), tmp_path / "rep")
    shot, netlog = tmp_path / "shot.png", tmp_path / "net.json"
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
        "--hide-scrollbars",
        "--window-size=1200,900",
        "--virtual-time-budget=5000",
        f"--log-net-log={netlog}",
        f"--user-data-dir={tmp_path / 'prof'}",
    ]
    subprocess.run(
        [CHROMIUM, *flags, f"--screenshot={shot}", paths["index.html"].as_uri()],
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert shot.is_file()
    img = Image.open(shot).convert("RGB")
    # the plot area (below the header) must not be blank: plotly draws markers and axes
    stat = ImageStat.Stat(img.crop((0, 250, 1200, 650)))
    assert max(stat.stddev) > 10
    # a page that ran the injected script would set a global; dump the DOM and check it did not
    dom = subprocess.run(
        [
            CHROMIUM,
            *[f for f in flags if not f.startswith("--log-net-log")],
            "--dump-dom",
            paths["index.html"].as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "main-svg" in dom.stdout  # plotly rendered its SVG
    assert EVIL not in dom.stdout
    assert page_requests(netlog) == []


def page_requests(netlog: Path) -> list[str]:
    """URLs the page itself fetched over the network (blink resource loads), not the browser's own services."""
    import re

    return re.findall(r'"traffic_annotation":101845102,"url":"(https?://[^"]*)"', netlog.read_text())


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (.ci/run installs it)")
def test_network_detector_sees_page_requests(tmp_path):
    page = tmp_path / "t.html"
    page.write_text('<html><body><img src="http://127.0.0.1:9/x.png"></body></html>')
    netlog = tmp_path / "net.json"
    subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--virtual-time-budget=2000",
            f"--log-net-log={netlog}",
            f"--user-data-dir={tmp_path / 'p'}",
            "--dump-dom",
            page.as_uri(),
        ],
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert page_requests(netlog) == ["http://127.0.0.1:9/x.png"]
