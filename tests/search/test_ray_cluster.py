"""Scale-out: one ``--controller ray`` search spread over a real two-node Ray cluster.

Both nodes run on this machine (``ray.cluster_utils.Cluster``, one CPU each) and every
trial is recorded in one SQLite Optuna storage by the driver; the Ray node id that ran
each trial is read back from the storage.
"""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
import torch

from automc import models
from automc.pipeline import search

pytestmark = [pytest.mark.ray, pytest.mark.filterwarnings("ignore::FutureWarning")]


@pytest.fixture
def cluster():
    ray = pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    if ray.is_initialized():
        pytest.skip("a Ray instance is already running in this process")
    two = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    try:
        two.add_node(num_cpus=1)
        two.wait_for_nodes()
        yield two
    finally:
        if ray.is_initialized():
            ray.shutdown()
        two.shutdown()


def test_ray_search_runs_on_both_nodes_into_one_storage(cluster, tmp_path: Path) -> None:
    weights = tmp_path / "base.pt"  # untrained weights: this test is about placement, not accuracy
    torch.save(models.create("test_tiny").state_dict(), weights)
    node_ids = {cluster.head_node.node_id, *(n.node_id for n in cluster.worker_nodes)}
    assert len(node_ids) == 2
    out = tmp_path / "run"
    result = search(
        model="test_tiny",
        dataset="synthetic",
        space="prune",
        budgets=["flops=1.0"],
        objectives=["acc", "macs"],
        controller="ray",
        trials=6,
        profile=None,
        weights=str(weights),
        out=out,
        finetune_top=0,
        export_onnx=False,
        progress=False,
        ray_address=cluster.address,
    )
    trials = optuna.load_study(study_name=result.study, storage=result.storage).get_trials()
    assert len(trials) == 6
    assert all(t.state.name == "COMPLETE" for t in trials), [t.user_attrs.get("failure") for t in trials]
    ran_on = [t.user_attrs["info"]["node_id"] for t in trials]
    assert set(ran_on) == node_ids, "trials ran on both nodes of the cluster"
    assert result.storage == f"sqlite:///{out / 'study.db'}"
    assert (out / "index.html").is_file()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def token_cluster(tmp_path: Path):
    """Two nodes started as the README says: ``ray start`` with ``RAY_AUTH_MODE=token`` and one
    shared ``RAY_AUTH_TOKEN`` on each node (``--block``, in their own process groups, which
    are stopped at the end; never ``ray stop``, which would stop every Ray on the machine)."""
    import os
    import secrets
    import signal
    import subprocess
    import sys
    import time

    pytest.importorskip("ray")
    ray_cli = str(Path(sys.executable).with_name("ray"))
    port = _free_port()
    env = {
        **os.environ,
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": secrets.token_hex(16),
        "HOME": str(tmp_path),
    }
    common = ["--num-cpus", "1", "--block", "--disable-usage-stats"]
    head = [ray_cli, "start", "--head", "--port", str(port), "--include-dashboard", "false", *common]
    nodes = [
        subprocess.Popen(
            head, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
    ]
    try:
        address = f"127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        probe = [
            sys.executable,
            "-c",
            f"import ray; ray.init(address={address!r}); assert ray.is_initialized()",
        ]
        while subprocess.run(probe, env=env, capture_output=True).returncode != 0:
            assert time.monotonic() < deadline, "the head node did not come up in 120 s"
            time.sleep(1)
        worker = [ray_cli, "start", "--address", address, *common]
        nodes.append(
            subprocess.Popen(
                worker, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
        )
        count = (
            f"import ray; ray.init(address={address!r}); print(len([n for n in ray.nodes() if n['Alive']]))"
        )
        while (
            subprocess.run(
                [sys.executable, "-c", count], env=env, capture_output=True, text=True
            ).stdout.strip()
            != "2"
        ):
            assert time.monotonic() < deadline, "the second node did not join in 120 s"
            time.sleep(1)
        yield address, env
    finally:
        for node in reversed(nodes):
            if node.poll() is None:
                os.killpg(node.pid, signal.SIGTERM)
        for node in nodes:
            try:
                node.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(node.pid, signal.SIGKILL)
                node.wait()
        # a killed head leaves its address behind, and a later ray.init() would try to join it
        from ray._common.utils import get_ray_address_file

        current = Path(get_ray_address_file(None))
        if current.is_file() and current.read_text().strip().endswith(f":{port}"):
            current.unlink()


SEARCH_CLI = (
    "search --model test_tiny --dataset synthetic --space prune --budget flops=1.0 --objectives acc,macs "
    "--controller ray --trials 4 --profile none --finetune-top 0 --no-onnx --quiet"
)


def test_search_on_a_token_auth_cluster_started_as_the_readme_says(token_cluster, tmp_path: Path) -> None:
    import subprocess
    import sys

    address, env = token_cluster
    weights = tmp_path / "base.pt"
    torch.save(models.create("test_tiny").state_dict(), weights)
    out = tmp_path / "run"
    argv = [sys.executable, "-m", "automc", *SEARCH_CLI.split(), "--weights", str(weights), "--out", str(out)]
    done = subprocess.run(
        [*argv, "--ray-address", address], env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    study = optuna.get_all_study_summaries(f"sqlite:///{out / 'study.db'}")[0].study_name
    trials = optuna.load_study(study_name=study, storage=f"sqlite:///{out / 'study.db'}").get_trials()
    assert len(trials) == 4 and all(t.state.name == "COMPLETE" for t in trials)
    assert len({t.user_attrs["info"]["node_id"] for t in trials}) == 2, "trials ran on both nodes"
    without = {k: v for k, v in env.items() if k not in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN")}
    refused = subprocess.run(
        [*argv, "--ray-address", address, "--study", "no-token"],
        env=without,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert refused.returncode == 2 and len(refused.stderr.splitlines()) == 1, refused.stderr
    assert f"--ray-address {address}: no Ray cluster answers there" in refused.stderr


def test_unreachable_address_fails_within_30_s(tmp_path: Path) -> None:
    import subprocess
    import sys
    import time

    weights = tmp_path / "base.pt"
    torch.save(models.create("test_tiny").state_dict(), weights)
    argv = [
        sys.executable,
        "-m",
        "automc",
        *SEARCH_CLI.split(),
        "--weights",
        str(weights),
        "--out",
        str(tmp_path / "r"),
    ]
    for address in (f"127.0.0.1:{_free_port()}", "10.255.255.1:6379"):
        t0 = time.monotonic()
        done = subprocess.run([*argv, "--ray-address", address], capture_output=True, text=True, timeout=120)
        assert time.monotonic() - t0 <= 30
        assert done.returncode == 2 and len(done.stderr.splitlines()) == 1, done.stderr
        assert f"--ray-address {address}: no Ray cluster answers there" in done.stderr
        assert not (tmp_path / "r" / "study.db").exists()
