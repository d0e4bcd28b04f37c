"""Report rendering from a real Optuna SQLite storage (torch-free)."""

import csv
import html
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
    """A study as the search records it: over-budget candidates PRUNED with their cost and no
    values; three objectives (acc, macs, latency_ms); three fine-tuned winners, the most
    accurate on test measured over budget and another the most accurate on val."""
    url = f"sqlite:///{tmp_path / 'study.db'}"
    study = optuna.create_study(study_name=name, storage=url, directions=["maximize", "minimize", "minimize"])
    limits = {"macs": 30e6, "latency_ms": 1.6}
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
                {"name": "latency_ms", "direction": "minimize"},
            ],
            "limits": limits,
            "layer_order": [layer, "fc"],
        },
    )
    rng = random.Random(0)
    dist = optuna.distributions.FloatDistribution(0.2, 1.0)
    for i in range(n):
        keep = rng.uniform(0.2, 1.0)
        macs, latency_ms = 40e6 * keep**2, 0.3 + 1.7 * keep**2
        acc = 0.99 - 0.5 * (1 - keep) ** 2 + rng.uniform(-0.02, 0.02)
        constraints = {"macs": macs / limits["macs"] - 1, "latency_ms": latency_ms / limits["latency_ms"] - 1}
        feasible = all(v <= 0 for v in constraints.values())
        state = optuna.trial.TrialState
        st = state.FAIL if i == 3 else (state.COMPLETE if feasible else state.PRUNED)
        study.add_trial(
            optuna.trial.create_trial(
                params={"keep": keep},
                distributions={"keep": dist},
                values=[acc, macs, latency_ms] if st == state.COMPLETE else None,
                state=st,
                user_attrs={
                    "plan": {
                        "criterion": "l1",
                        "layers": {layer: {"keep_ratio": round(keep, 2), "w_bits": 8}},
                    },
                    "cost": {
                        "macs": macs,
                        "latency_ms": latency_ms,
                        "params": 2e5 * keep,
                        "energy_mj": 0.1 * keep,
                        "energy_compute_mj": 0.04 * keep,
                        "energy_memory_mj": 0.06 * keep,
                    },
                    "proxy": {"acc": acc} if st == state.COMPLETE else {},
                    "constraints": constraints,
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
            "val_acc": 0.97,
            "macs": 40e6,
            "latency_ms": 2.0,
            "latency_ms_measured": 2.1,
            "latency_ms_measured_iqr": 0.1,
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
                "val_acc": (0.93, 0.95, 0.94)[j],
                "test_acc": (0.96, 0.93, 0.95)[j],
                "test_acc_before": 0.9,
                "macs_measured": 20e6,
                "latency_ms": 1.0 + 0.2 * j,
                "latency_ms_measured": (1.7, 1.2, 1.1)[j],
                "latency_ms_measured_iqr": 0.05,
                "meets_budget_measured": j != 0,
                "measured_constraints": {"macs": -0.33, "latency_ms": (1.7, 1.2, 1.1)[j] / 1.6 - 1},
                "energy_mj": 0.05,
                "energy_compute_mj": 0.02,
                "energy_memory_mj": 0.03,
                "plan": {"layers": {layer: {"keep_ratio": 0.5, "w_bits": 8, "rank": 3}}},
                "files": {
                    "model": str(tmp_path / "rep" / "winners" / f"trial{t}" / "model.pt"),
                    "plan": "p.json",
                },
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
        feas[i].number for i in non_dominated([t.values for t in feas], ["maximize", "minimize", "minimize"])
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


PROBE = """<script>
window.addEventListener('load', function () { setTimeout(function () {
  function boxes(sel) { return Array.from(document.querySelectorAll(sel)).map(function (el) {
    var r = el.getBoundingClientRect();
    return {sel: sel, text: (el.textContent || '').slice(0, 60), x: r.left + window.scrollX,
            y: r.top + window.scrollY, w: r.width, h: r.height};
  }).filter(function (b) { return b.w > 0 && b.h > 0; }); }
  var out = {};
  ['h1', 'h2', '.panel-title', '.modebar', '.legend', '.xtitle', '.ytitle', '.gtitle',
   '.annotation', '.plot'].forEach(function (s) { out[s] = boxes(s); });
  var pre = document.createElement('pre'); pre.id = 'layout-probe';
  pre.textContent = JSON.stringify(out); document.body.appendChild(pre);
}, 500); });
</script>"""
WINDOW = (1200, 6000)


def overlap(a: dict, b: dict) -> bool:
    return (
        a["x"] < b["x"] + b["w"]
        and b["x"] < a["x"] + a["w"]
        and a["y"] < b["y"] + b["h"]
        and b["y"] < a["y"] + a["h"]
    )


def chromium(tmp_path: Path, page: Path, *mode: str) -> subprocess.CompletedProcess:
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--hide-scrollbars",
        f"--window-size={WINDOW[0]},{WINDOW[1]}",
        "--virtual-time-budget=8000",
        f"--user-data-dir={tmp_path / 'prof'}",
    ]
    return subprocess.run(
        [CHROMIUM, *flags, *mode, page.as_uri()], capture_output=True, text=True, timeout=180
    )


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (.ci/run installs it)")
def test_report_layout_has_no_overlapping_toolbars_titles_or_legends(tmp_path):
    """Element boxes from the rendered page (the probe writes getBoundingClientRect into the DOM),
    checked against each other and against a screenshot of the same page at the same size."""
    from PIL import Image, ImageStat

    url = make_study(tmp_path)
    paths = render(ReportData.from_storage(url, "demo"), tmp_path / "rep")
    probe = tmp_path / "rep" / "probe.html"
    probe.write_text(paths["index.html"].read_text().replace("</body>", PROBE + "</body>"))
    dom = chromium(tmp_path, probe, "--dump-dom").stdout
    layout = json.loads(html.unescape(dom.split('<pre id="layout-probe">')[1].split("</pre>")[0]))
    plots, titles, bars = layout[".plot"], layout[".panel-title"], layout[".modebar"]
    assert len(plots) >= 5 and len(bars) == len(plots) and len(titles) >= len(plots)
    assert any("2-D projection of the 3-objective front" in t["text"] for t in titles)
    assert any("measured latency" in t["text"] for t in titles)
    assert not layout[".gtitle"]  # titles are page headings, not drawn inside the plots
    labels = titles + layout["h1"] + layout["h2"] + layout[".legend"] + layout[".xtitle"] + layout[".ytitle"]
    labels += layout[".annotation"]
    for bar in bars:
        hits = [b["text"] for b in labels if overlap(bar, b)]
        assert not hits, f"the toolbar covers {hits}"
    for i, a in enumerate(labels):
        for b in labels[i + 1 :]:
            assert not overlap(a, b), f"{a['sel']} {a['text']!r} overlaps {b['sel']} {b['text']!r}"
    shot = tmp_path / "shot.png"
    chromium(tmp_path, probe, f"--screenshot={shot}")
    img = Image.open(shot).convert("L")
    assert img.size == WINDOW
    for t in titles:  # each heading's box holds dark text pixels in the screenshot: the boxes are where drawn
        box = (int(t["x"]), int(t["y"]), int(t["x"] + t["w"]), int(t["y"] + t["h"]))
        if box[3] <= WINDOW[1]:
            assert ImageStat.Stat(img.crop(box)).extrema[0][0] < 100, t["text"]
    for p in plots:  # each plot's box is drawn (axes, markers), not blank
        box = (int(p["x"]), int(p["y"]), int(p["x"] + p["w"]), int(p["y"] + p["h"]))
        if box[3] <= WINDOW[1]:
            assert ImageStat.Stat(img.crop(box)).stddev[0] > 10
    text = paths["index.html"].read_text()
    assert "over budget, not scored" in text and "budget 30M" in text and "budget 1.6ms" in text
    assert "href='winners/trial" in text  # winner files linked relative to the report


def test_recommendation_is_chosen_on_val_among_winners_meeting_the_budget_by_measurement(tmp_path):
    url = make_study(tmp_path)
    data = ReportData.from_storage(url)
    paths = render(data, tmp_path / "rep")
    front = data.pareto_numbers()
    body = json.loads(paths["pareto.json"].read_text())["recommended"]
    # front[0] is the most accurate on test but measured over the latency budget; front[1] leads on val
    assert body["trial"] == front[1]
    verdicts = {r["trial"]: r["verdict"] for r in body["table"]}
    assert verdicts[front[0]].startswith("over budget by measurement (latency_ms +6%")
    assert verdicts[front[2]] == "less accurate on val (-0.0100)"
    assert f"Ship trial {front[1]}: the most accurate on val (0.9500)" in paths["summary.md"].read_text()


def test_ties_on_val_go_to_the_cheaper_winner_and_no_winner_means_no_recommendation():
    from automc.report.data import recommend

    base = {"meets_budget_measured": True, "macs_measured": 1e6}
    tied = [
        {**base, "trial": 1, "val_acc": 0.9, "latency_ms_measured": 2.0},
        {**base, "trial": 2, "val_acc": 0.8995, "latency_ms_measured": 1.0},
    ]
    rec = recommend(tied)
    assert rec.trial == 2 and "cheaper by measured latency" in rec.reason
    assert [r["verdict"] for r in rec.rows] == ["recommended", "tied on val, costlier"]
    over = [{**tied[0], "meets_budget_measured": False}]
    assert recommend(over).trial is None and recommend([]).trial is None


def test_summary_and_tables_use_human_units(tmp_path):
    import re

    url = make_study(tmp_path)
    paths = render(ReportData.from_storage(url), tmp_path / "rep")
    summary = paths["summary.md"].read_text()
    assert "macs <= 30M" in summary and "latency_ms <= 1.6ms" in summary and "| 40M |" in summary
    assert not re.search(r"\d{5,}|\de[+-]\d", summary.split("## Winners")[1])


def test_report_picks_the_only_study_and_asks_when_there_are_several(tmp_path, capsys):
    url = make_study(tmp_path)
    assert main(["report", "--storage", url, "--out", str(tmp_path / "r")]) == 0
    optuna.create_study(study_name="other", storage=url)
    assert main(["report", "--storage", url, "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "holds 2 studies (demo, other): name one with --study" in err
