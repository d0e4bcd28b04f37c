"""The ``ray`` controller: the shared contract (in-process ask/tell) and real Ray Tune runs.

The Ray tests start one real local Ray instance (2 CPUs) for the module and record into a
real SQLite Optuna storage.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from automc.errors import AutomcError
from automc.plan import Measurement
from automc.search.base import Candidate, TrialFailed
from automc.search.ray_tune import RayController
from automc.testing.controller_contract import ControllerContract, synthetic_evaluate

FAST = {"n_startup_trials": 4}


@pytest.fixture(scope="module")
def ray_local():
    ray = pytest.importorskip("ray")
    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    if started:
        ray.shutdown()


class KillOnceFailOnce:
    """Kills its own Ray worker process on the first trial to run, and fails one other candidate.

    Marker files make both happen exactly once across worker processes: ``kill_marker`` is
    created atomically by the trial that kills itself (its retry then finds it and goes on),
    ``fail_marker`` is taken (renamed) by the one trial that raises ``TrialFailed``.
    """

    def __init__(self, tmp_path: Path, layers) -> None:
        self.kill_marker = str(tmp_path / "killed")
        self.fail_marker = str(tmp_path / "fail-once")
        Path(self.fail_marker).touch()
        self.evaluate = synthetic_evaluate(layers)

    def __call__(self, candidate: Candidate) -> Measurement:
        try:
            fd = os.open(self.kill_marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            pass
        else:
            os.write(fd, str(os.getpid()).encode())
            os.close(fd)
            os._exit(1)
        try:
            os.rename(self.fail_marker, self.fail_marker + ".taken")
        except FileNotFoundError:
            return self.evaluate(candidate)
        raise TrialFailed("synthetic failure")


class TestRayContract(ControllerContract):
    controller_name = "ray"
    options = FAST

    def storage_url(self, tmp_path: Path) -> str:
        """A real SQLite storage, as a run directory gets by default."""
        return f"sqlite:///{tmp_path / 'study.db'}"

    @pytest.mark.ray
    def test_drive_completes_and_resumes(self, tmp_path: Path, ray_local) -> None:
        """The shared drive test run on real Ray workers, plus retry, node and feasibility checks.

        One worker is killed mid-trial (retried by Tune), one candidate fails in evaluate
        (recorded as FAIL, not retried); the failure survives pickling to the worker
        because it is signalled through files.
        """
        controller = self._fresh(tmp_path)
        layers = controller.space.layers
        seen: list[tuple[str, bool, str]] = []
        evaluate = KillOnceFailOnce(tmp_path, layers)
        controller.drive(evaluate, 5, on_result=lambda c, m, r: seen.append((c.id, m is None, r)))
        assert Path(evaluate.kill_marker).exists()
        assert controller.recorder.completed() == 5
        assert sum(failed for _, failed, _ in seen) == 1
        assert len({cid for cid, _, _ in seen}) == 5
        records = controller.recorder.trials()
        failed = [r for r in records if r.state == "FAIL"]
        assert len(failed) == 1 and "synthetic failure" in failed[0].failure
        study = controller.recorder.study
        node = ray_local.get_runtime_context().get_node_id()
        complete = [t for t in study.get_trials() if t.state.name == "COMPLETE"]
        assert {t.user_attrs["info"]["node_id"] for t in complete} == {node}
        assert all(t.user_attrs["info"]["hostname"] for t in complete)
        infeasible = {t.number for t in complete if any(v > 0 for v in t.constraints.values())}
        best = {t.number for t in study.best_trials}
        assert best and not best & infeasible
        assert list((tmp_path / "ray").iterdir())

        recorder = self.make_recorder(self.storage_url(tmp_path))
        resumed = self.make_controller(space=self.make_space(), recorder=recorder, seed=0)
        resumed.drive(synthetic_evaluate(layers), 9)
        assert recorder.completed() == 9
        after = recorder.trials()
        assert [r.params for r in after[:5]] == [r.params for r in records]
        assert [r.values for r in after[:5]] == [r.values for r in records]
        assert all(r.state == "COMPLETE" for r in after[5:])
        for r in after:
            assert resumed.space.contains(r.params)
        resumed.drive(synthetic_evaluate(layers), 9)
        assert recorder.completed() == 9


def test_options_are_validated() -> None:
    contract = TestRayContract()
    space = contract.make_space()
    with pytest.raises(AutomcError, match="unknown option"):
        RayController(
            space=space, objectives=contract.objectives, recorder=contract.make_recorder(None), workers=3
        )
    with pytest.raises(AutomcError, match="cpus_per_trial"):
        RayController(
            space=space,
            objectives=contract.objectives,
            recorder=contract.make_recorder(None),
            cpus_per_trial=0,
        )
    controller = contract._fresh()
    with pytest.raises(AutomcError, match="not a automc-ray/1 state"):
        controller.load_state_dict({"format": "automc-amc/1"})


def test_constraints_reach_the_searcher_and_failures_are_failed() -> None:
    contract = TestRayContract()
    controller = contract._fresh()
    evaluate = synthetic_evaluate(controller.space.layers)
    c = controller.ask()
    controller.tell(c.id, evaluate(c))
    c = controller.ask()
    controller.tell(c.id, None, reason="boom")
    inner = controller._searcher._ot_study.get_trials()
    assert [t.state.name for t in inner] == ["COMPLETE", "FAIL"]
    assert set(inner[0].constraints) == {"macs"}


def test_import_needs_neither_ray_nor_optuna() -> None:
    code = "import sys, automc.search.ray_tune; assert not {'ray', 'optuna', 'torch'} & set(sys.modules)"
    subprocess.run([sys.executable, "-c", code], check=True)
