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
