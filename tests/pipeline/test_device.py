"""``device`` reaches every stage: base training, accuracy evaluation, proxy scoring, fine-tuning."""

from __future__ import annotations

import pytest
import torch

import automc
from automc import train
from automc.device import Placement, resolve
from automc.errors import AutomcError
from automc.proxy import ShortTrainProxy
from automc.testing.search import TINY_SEARCH

ARGS = {
    **TINY_SEARCH,
    "finetune_top": 1,
    "finetune_epochs": 1,
    "base_epochs": 1,
    "proxy": "short_train",
    "proxy_steps": 2,
    "export_onnx": False,
}


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> dict[str, set[str]]:
    """The devices each stage ran on, recorded from the tensors and placements it received."""
    seen: dict[str, set[str]] = {"fit": set(), "evaluate": set(), "proxy": set()}
    fit, evaluate, compute = train._fit, train.evaluate, ShortTrainProxy._compute

    def spy_fit(model, splits, **kw):
        result = fit(model, splits, **kw)
        seen["fit"].add(f"{kw['desc']}@{next(model.parameters()).device.type}")
        return result

    def spy_evaluate(model, dataset, batch_size=256, *, device=None, workers=0):
        ran_on = torch.device(device) if device is not None else next(model.parameters()).device
        seen["evaluate"].add(ran_on.type)
        return evaluate(model, dataset, batch_size, device=device, workers=workers)

    def spy_compute(self, model):
        result = compute(self, model)
        seen["proxy"].add(f"{next(model.parameters()).device.type}/{self._data.device.type}")
        return result

    monkeypatch.setattr(train, "_fit", spy_fit)
    monkeypatch.setattr(train, "evaluate", spy_evaluate)
    monkeypatch.setattr(ShortTrainProxy, "_compute", spy_compute)
    return seen


def _run_on(device: str, tmp_path, seen: dict[str, set[str]]) -> None:
    kind = torch.device(device).type
    seed = {"cpu": 0, "cuda": 1}[kind]  # a seed of its own: the base model is trained here, not cached
    result = automc.search(trials=4, out=tmp_path, seed=seed, device=device, **ARGS)
    assert result.config.hardware.device == device
    assert seen["fit"] == {f"train@{kind}", f"finetune@{kind}"}
    assert seen["evaluate"] == {kind}
    assert seen["proxy"] == {f"{kind}/{kind}"}
    assert result.winners
    # the winners come back to the CPU: their files, MACs and latency do not depend on the device
    assert all(p.device.type == "cpu" for w in result.winners for p in w.model.parameters())
    assert all(w.figures["latency_ms_measured"] > 0 for w in result.winners)


def test_the_whole_pipeline_runs_on_the_device_it_is_given(home, tmp_path, spy):
    _run_on("cpu", tmp_path, spy)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_the_whole_pipeline_runs_on_cuda(home, tmp_path, spy):
    _run_on("cuda", tmp_path, spy)


@pytest.mark.parametrize(
    ("name", "message"),
    [("gpu", "must be auto, cpu, cuda or cuda:N"), ("cuda:x", "must be auto, cpu, cuda or cuda:N")],
)
def test_bad_device_names_are_refused_naming_the_flag(name, message):
    with pytest.raises(AutomcError, match=f"--device {message}"):
        automc.SearchConfig().with_overrides(device=name)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_cuda_without_cuda_is_one_clear_line(tmp_path, capsys):
    from automc.cli import main

    args = ["search", "--model", "test_tiny", "--dataset", "synthetic", "--profile", "none"]
    args += ["--device", "cuda", "--out", str(tmp_path)]
    assert main(args) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("automc: error")]
    assert len(errors) == 1 and "CUDA is not available" in errors[0]
    assert resolve("auto") == torch.device("cpu")


def test_amp_autocasts_only_on_cuda():
    assert Placement(device="cpu", amp=True).autocast_dtype() is None
    assert Placement(device="cuda:0", amp=False).autocast_dtype() is None


def test_loader_workers_default_to_none_on_the_cpu_and_pin_only_on_cuda():
    assert Placement.of("cpu").loader_options() == {"workers": 0, "pin_memory": False}
    assert Placement.of("cpu", workers=3).loader_options() == {"workers": 3, "pin_memory": False}
    assert Placement(device="cuda:0", workers=2).loader_options() == {"workers": 2, "pin_memory": True}
    if torch.cuda.is_available():
        cuda = Placement.of("cuda")
        assert 1 <= cuda.workers <= 4 and cuda.loader_options()["pin_memory"]


def test_run_restores_the_callers_thread_count(home, tmp_path):
    before = torch.get_num_threads()
    target = 1 if before != 1 else 2
    automc.search(trials=2, out=tmp_path, seed=0, threads=target, **{**ARGS, "finetune_top": 0})
    assert torch.get_num_threads() == before


def _evaluator():
    from automc import data
    from automc.pipeline.evaluate import Evaluator
    from automc.proxy import ProxyBatches, ProxyData, create

    splits = data.load("synthetic", None, seed=0)
    data = ProxyData.from_splits(splits, ProxyBatches(calib_batches=1, calib_batch_size=8))
    proxy = create("adaptive_bn", data=data)
    return Evaluator(
        model=None, layers=(), example_input=None, proxy=proxy, cost_model=None, limits={}, objectives=()
    )


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only machine")
def test_a_ray_trial_without_cuda_keeps_scoring_on_the_cpu():
    from automc.search.ray_tune import to_trial_gpu

    evaluator = _evaluator()
    assert to_trial_gpu(evaluator) is False
    assert evaluator.proxy.device.type == "cpu"


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_ray_trial_given_a_gpu_scores_on_it():
    from automc.search.ray_tune import to_trial_gpu

    evaluator = _evaluator()
    assert to_trial_gpu(evaluator) is True
    assert evaluator.proxy.device.type == "cuda"
    assert all(
        b.device.type == "cpu" for b in evaluator.proxy.calibration_batches()
    )  # compression stays on the CPU


def test_a_pickled_proxy_holds_cpu_tensors_only():
    """A Ray worker given no GPU unpickles the evaluator: nothing in it may be a CUDA tensor."""
    import pickle

    evaluator = _evaluator()
    evaluator.proxy.to("cuda:0" if torch.cuda.is_available() else "cpu")
    from automc import models
    from automc.plan import CompressionPlan

    back = pickle.loads(pickle.dumps(evaluator))
    assert back.proxy.device.type == "cpu"
    assert 0.0 <= back.proxy.evaluate(models.create("test_tiny"), CompressionPlan())["acc"] <= 1.0
