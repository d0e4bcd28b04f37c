"""Training, evaluation, KD fine-tuning and the base-model cache, on tiny models and data."""

from __future__ import annotations

import json
import time
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from automc import data, models, train
from automc.errors import AutomcError

QUIET = train.FitOptions(progress=False)
SEED1 = train.FitOptions(seed=1, progress=False)

torch.set_num_threads(2)


@pytest.fixture(scope="module")
def synthetic() -> data.Splits:
    return data.load("synthetic")


def test_evaluate_matches_a_manual_computation(synthetic: data.Splits) -> None:
    torch.manual_seed(0)
    model = models.create("test_tiny").train()
    result = train.evaluate(model, synthetic.test, batch_size=10)
    assert model.training  # mode restored
    model.eval()
    x, y = synthetic.test.tensors
    with torch.no_grad():
        logits = model(x)
    assert result["acc"] == pytest.approx(float((logits.argmax(1) == y).float().mean()))
    assert result["loss"] == pytest.approx(float(F.cross_entropy(logits, y)), rel=1e-5)


def test_short_training_run_learns_synthetic_data(synthetic: data.Splits) -> None:
    torch.manual_seed(0)
    model = models.create("test_tiny")
    before = train.evaluate(model, synthetic.test)["acc"]
    result = train.train(
        model, synthetic, train.Recipe(epochs=6, lr=0.1, batch_size=32, weight_decay=5e-4), options=QUIET
    )
    after = train.evaluate(model, synthetic.test)["acc"]
    assert len(result.train_loss) == 6
    assert result.train_loss[-1] < result.train_loss[0]
    assert after > 0.6 and after > before + 0.3
    assert result.val_acc > 0.6
    assert not model.training


def test_slow_batchnorm_statistics_are_reestimated_after_training(synthetic: data.Splits) -> None:
    """With torchvision MobileNetV3's BN momentum (0.01) and 48 steps, the running statistics
    still hold most of their initial (0, 1): they are re-estimated over the training set,
    which restores eval-mode accuracy. PyTorch's default momentum (0.1) is left alone."""

    def fit(momentum: float) -> tuple[nn.Module, train.TrainResult]:
        torch.manual_seed(0)
        model = models.create("test_tiny")
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.momentum = momentum
        result = train.train(
            model, synthetic, train.Recipe(epochs=6, lr=0.1, batch_size=32, weight_decay=5e-4), options=QUIET
        )
        return model, result

    slow, result = fit(0.01)
    assert result.bn_recalibrated == 2
    bn = slow.get_submodule("bn1")
    assert bn.momentum == 0.01
    x, _ = synthetic.train.tensors
    with torch.no_grad():
        pre = slow.get_submodule("conv1")(x)
    assert torch.allclose(bn.running_mean, pre.mean((0, 2, 3)), rtol=1e-3, atol=1e-4)
    assert train.evaluate(slow, synthetic.test)["acc"] > 0.6

    default, result = fit(0.1)
    assert result.bn_recalibrated == 0  # 0.9 ** 48 = 0.6% of the start is left: within BN_STALE_LIMIT


def test_training_is_deterministic(synthetic: data.Splits) -> None:
    def run() -> dict[str, torch.Tensor]:
        torch.manual_seed(3)
        model = models.create("test_residual")
        train.train(
            model,
            synthetic,
            train.Recipe(epochs=1, lr=0.05, batch_size=64, weight_decay=5e-4),
            options=train.FitOptions(seed=3, progress=False),
        )
        return model.state_dict()

    a, b = run(), run()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_bad_hyperparameters_are_user_errors(synthetic: data.Splits) -> None:
    model = models.create("test_tiny")
    with pytest.raises(AutomcError, match="epochs"):
        train.train(model, synthetic, train.Recipe(epochs=-1, lr=0.1), options=QUIET)
    with pytest.raises(AutomcError, match="learning rate"):
        train.train(model, synthetic, train.Recipe(epochs=1, lr=0.0), options=QUIET)
    with pytest.raises(AutomcError, match="alpha"):
        train.finetune(
            model, synthetic, distillation=train.Distillation(teacher=model, alpha=1.5), options=QUIET
        )


def test_divergence_is_reported(synthetic: data.Splits) -> None:
    model = models.create("test_linear")
    with pytest.raises(AutomcError, match="diverged"):
        train.train(model, synthetic, train.Recipe(epochs=2, lr=1e12, batch_size=64), options=QUIET)


def test_kd_loss_reduces_to_its_parts() -> None:
    torch.manual_seed(0)
    s, t = torch.randn(8, 10), torch.randn(8, 10)
    y = torch.randint(0, 10, (8,))
    assert float(train.kd_loss(s, y, t, temperature=4.0, alpha=0.0)) == pytest.approx(
        float(F.cross_entropy(s, y))
    )
    assert float(train.kd_loss(s, y, s, temperature=4.0, alpha=1.0)) == pytest.approx(0.0, abs=1e-6)
    p_t, log_p_s = F.softmax(t / 2.0, 1), F.log_softmax(s / 2.0, 1)
    kl = float((p_t * (p_t.log() - log_p_s)).sum(1).mean())
    assert float(train.kd_loss(s, y, t, temperature=2.0, alpha=1.0)) == pytest.approx(4.0 * kl, rel=1e-5)


def test_kd_finetune_runs_and_the_loss_decreases(synthetic: data.Splits) -> None:
    torch.manual_seed(0)
    teacher = models.create("test_tiny")
    train.train(
        teacher, synthetic, train.Recipe(epochs=4, lr=0.05, batch_size=32, weight_decay=5e-4), options=QUIET
    )
    teacher_state = {k: v.clone() for k, v in teacher.state_dict().items()}
    student = models.create("test_depthwise")
    result = train.finetune(
        student,
        synthetic,
        train.Recipe(epochs=4, lr=0.05),
        distillation=train.Distillation(teacher=teacher),
        options=QUIET,
    )
    assert result.train_loss[-1] < result.train_loss[0]
    assert all(torch.equal(teacher_state[k], v) for k, v in teacher.state_dict().items())  # teacher untouched
    assert not teacher.training


class _FakeQuant(nn.Module):
    """A stand-in fake-quant module: 4-bit uniform rounding with a straight-through estimator."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = x.detach().abs().max().clamp_min(1e-8) / 7
        q = torch.clamp(torch.round(x / scale), -8, 7) * scale
        return x + (q - x).detach()


def test_finetune_trains_a_model_with_fake_quant_modules(synthetic: data.Splits) -> None:
    torch.manual_seed(0)
    model = models.create("test_tiny")
    model.conv2 = nn.Sequential(_FakeQuant(), model.conv2)
    before = model.conv2[1].weight.detach().clone()
    result = train.finetune(model, synthetic, train.Recipe(epochs=3, lr=0.05), options=QUIET)
    assert not torch.equal(before, model.conv2[1].weight)
    assert result.train_loss[-1] < result.train_loss[0]


def _ce_step(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    x, y = batch
    return F.cross_entropy(model(x), y)


def _shifted_step(
    model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy against ``(label + 1) % classes``: what no default run learns."""
    x, y = batch
    logits = model(x)
    return F.cross_entropy(logits, (y + 1) % logits.shape[1]), logits


def _accuracies(model: nn.Module, splits: data.Splits) -> tuple[float, float]:
    """``(true-label, shifted-label)`` top-1 accuracy on the test split."""
    x, y = splits.test.tensors
    with torch.no_grad():
        pred = model.eval()(x).argmax(1)
    return float((pred == y).float().mean()), float((pred == (y + 1) % splits.num_classes).float().mean())


def test_a_cross_entropy_train_step_trains_exactly_like_the_default(synthetic: data.Splits) -> None:
    recipe = train.Recipe(epochs=2, lr=0.05, batch_size=32)
    states = []
    for step in (None, _ce_step):
        torch.manual_seed(0)
        model = models.create("test_tiny")
        result = train.train(model, synthetic, recipe, options=QUIET, train_step=step)
        states.append((model.state_dict(), result.train_loss))
    (a, loss_a), (b, loss_b) = states
    assert loss_a == loss_b and all(torch.equal(a[k], b[k]) for k in a)


def test_train_step_loss_is_what_training_and_finetuning_minimise(synthetic: data.Splits) -> None:
    """The step's loss replaces cross-entropy; fine-tuning distills only a step that returns logits."""
    recipe = train.Recipe(epochs=6, lr=0.1, batch_size=32)
    torch.manual_seed(0)
    teacher = models.create("test_tiny")
    train.train(teacher, synthetic, recipe, options=QUIET)
    true_acc, shifted_acc = _accuracies(teacher, synthetic)
    assert true_acc > 0.6 > shifted_acc
    kd = train.Distillation(teacher=teacher, alpha=1.0)

    torch.manual_seed(1)
    base = models.create("test_tiny")
    train.train(base, synthetic, recipe, options=QUIET, train_step=_shifted_step)
    true_acc, shifted_acc = _accuracies(base, synthetic)
    assert shifted_acc > 0.6 > true_acc  # base training minimised the step's loss

    def loss_only(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        return _shifted_step(model, batch)[0]

    torch.manual_seed(1)
    plain = models.create("test_tiny")
    train.finetune(plain, synthetic, recipe, distillation=kd, options=QUIET, train_step=loss_only)
    true_acc, shifted_acc = _accuracies(plain, synthetic)
    assert shifted_acc > 0.6 > true_acc  # a loss-only step is used as it is: no distillation
    torch.manual_seed(1)
    distilled = models.create("test_tiny")
    train.finetune(distilled, synthetic, recipe, distillation=kd, options=QUIET, train_step=_shifted_step)
    true_acc, shifted_acc = _accuracies(distilled, synthetic)
    assert true_acc > 0.6 > shifted_acc  # (loss, logits) with alpha 1: the teacher's labels win


def _no_grad_step(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    return _ce_step(model, batch).detach()


@pytest.mark.parametrize(
    ("step", "message"),
    [
        (
            lambda model, batch: 1.0,
            "train_step= must return a scalar loss tensor or (loss, logits), got a float",
        ),
        (lambda model, batch: model(batch[0]).sum(1), "got a torch.float32 tensor of shape (64,)"),
        (lambda model, batch: torch.tensor(3), "got a torch.int64 tensor"),
        (_no_grad_step, "train_step= returned a loss without gradient"),
        (
            lambda model, batch: (_ce_step(model, batch), "logits"),
            "the logits of (loss, logits) must be a (64, classes)",
        ),
        (
            lambda model, batch: _ce_step(model, batch) * float("nan"),
            "train_step= returned a non-finite loss (nan)",
        ),
        (lambda model, batch: batch["x"], "train_step= raised TypeError"),
        ("pkg.mod:step", "train_step= must be a function"),
    ],
)
def test_bad_train_steps_are_one_line_errors(step, message, synthetic: data.Splits) -> None:
    model = models.create("test_tiny")
    with pytest.raises(AutomcError) as error:
        train.check_train_step(step, model, synthetic)
    assert message in str(error.value) and "\n" not in str(error.value)
    with pytest.raises(AutomcError, match="train_step="):  # in training too
        train.train(model, synthetic, train.Recipe(epochs=1, lr=0.05), options=QUIET, train_step=step)


def test_set_threads_respects_omp_num_threads(monkeypatch) -> None:
    previous = torch.get_num_threads()
    try:
        monkeypatch.setenv("OMP_NUM_THREADS", "1")
        assert train.set_threads() == 1 and torch.get_num_threads() == 1
        monkeypatch.delenv("OMP_NUM_THREADS")
        assert train.set_threads() >= 1
    finally:
        torch.set_num_threads(previous)


def test_base_model_cache_hit_and_corrupt_cache_recovery(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("AUTOMC_HOME", str(tmp_path))
    first_model, first = train.base_model("test_tiny", "synthetic", epochs=2, options=SEED1)
    assert first["cached"] is False
    weights = tmp_path / "base_models" / first["weights_path"].split("/")[-1]
    assert weights.is_file() and weights.with_suffix(".json").is_file()
    assert json.loads(weights.with_suffix(".json").read_text())["test_acc"] == first["test_acc"]

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        start = time.perf_counter()
        second_model, second = train.base_model("test_tiny", "synthetic", epochs=2, options=SEED1)
        assert time.perf_counter() - start < 5.0
    assert second["cached"] is True
    assert second["test_acc"] == first["test_acc"]
    assert all(
        torch.equal(a, b)
        for a, b in zip(first_model.state_dict().values(), second_model.state_dict().values())
    )

    _, other_seed = train.base_model(
        "test_tiny", "synthetic", epochs=2, options=train.FitOptions(seed=2, progress=False)
    )
    assert other_seed["cached"] is False and other_seed["weights_path"] != first["weights_path"]

    weights.write_bytes(b"not a checkpoint")
    with pytest.warns(RuntimeWarning, match="unreadable, retraining"):
        _, third = train.base_model("test_tiny", "synthetic", epochs=2, options=SEED1)
    assert third["cached"] is False
    assert third["test_acc"] == first["test_acc"]  # deterministic retraining
    _, fourth = train.base_model("test_tiny", "synthetic", epochs=2, options=SEED1)
    assert fourth["cached"] is True


def test_base_model_cache_key_changes_with_the_recipe_data_and_augmentation(tmp_path) -> None:
    def paths(**changes):
        parts = dict(seed=0, recipe=train.recipe_for("digits"), data_identity="abc", augment="crop")
        key = train.cache_key("tv:resnet18", "imagefolder:/x/y", **{**parts, **changes})
        return train.cache_paths(key, cache_dir=tmp_path)

    slower = train.recipe_for("digits", lr=0.02)
    variants = [
        paths(),
        paths(recipe=train.recipe_for("digits", epochs=3)),
        paths(recipe=slower),
        paths(data_identity="abd"),
        paths(augment="none"),
    ]
    assert len(set(variants)) == 5
    assert (slower.lr, slower.epochs) == (0.02, train.recipe_for("digits").epochs)
    first = variants[0][0]
    assert (
        first.name.startswith("tv_resnet18-imagefolder_x_y-s0-") and first.parent == tmp_path / "base_models"
    )


@pytest.mark.slow
def test_resnet20_on_digits_reaches_97_percent(tmp_path) -> None:
    _, info = train.base_model("resnet20", "digits", cache_dir=tmp_path, options=QUIET)
    assert info["test_acc"] >= 0.97


def test_augment_shifts_within_bounds_and_flips() -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).reshape(2, 3, 8, 8)
    out = train._augment(x, crop=True, hflip=False, generator=gen)
    assert out.shape == x.shape
    # Each output is a (replicate-padded) shift of its own input: interior pixels come from it.
    for i in range(2):
        assert set(out[i].flatten().tolist()) <= set(x[i].flatten().tolist())
    flips = [train._augment(x[:1], crop=True, hflip=True, generator=gen) for _ in range(20)]
    row_increasing = [bool(f[0, 0, 4, 5] > f[0, 0, 4, 2]) for f in flips]
    assert any(row_increasing) and not all(row_increasing)


def test_augment_choices_flip_without_shift_and_refuse_unknown(synthetic: data.Splits) -> None:
    assert train._augmentations(True, synthetic) == (True, False)  # synthetic's own: crop
    assert train._augmentations(False, synthetic) == (False, False)
    assert train._augmentations("flip+crop", synthetic) == (True, True)
    assert train._augmentations("flip", synthetic) == (False, True)
    gen = torch.Generator().manual_seed(0)
    x = torch.arange(4 * 1 * 6 * 6, dtype=torch.float32).reshape(4, 1, 6, 6)
    out = train._augment(x, crop=False, hflip=True, generator=gen)
    for i in range(4):
        assert torch.equal(out[i], x[i]) or torch.equal(out[i], x[i].flip(-1))
    with pytest.raises(AutomcError, match="unknown augmentation 'rotate'"):
        train.train(
            models.create("test_tiny"),
            synthetic,
            train.Recipe(epochs=1, lr=0.1),
            augment="rotate",
            options=QUIET,
        )


def test_progress_is_one_line_per_epoch_off_a_terminal(synthetic: data.Splits, capsys) -> None:
    train.train(models.create("test_tiny"), synthetic, train.Recipe(epochs=2, lr=0.05))
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("automc: train: epoch")]
    assert [line.split(":")[2].strip() for line in lines] == ["epoch 1/2", "epoch 2/2"]
    assert all(" loss " in line and line.endswith(" s)") for line in lines)


def _image_folder(path, seed: int) -> None:
    from PIL import Image

    rng = np.random.default_rng(seed)
    for split, n in (("train", 12), ("test", 4)):
        for k, cls in enumerate(("dark", "light")):
            (path / split / cls).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                img = rng.integers(0, 60, (10, 10, 3), dtype=np.uint8) + np.uint8(150 * k)
                Image.fromarray(img).save(path / split / cls / f"{i}.png")


def test_rebuilt_image_folder_at_the_same_path_trains_a_new_base_model(tmp_path, capsys) -> None:
    folder, home = tmp_path / "images", tmp_path / "home"
    name = f"imagefolder:{folder}"
    options = data.DataOptions(input_size=12)

    def base() -> dict:
        splits = data.load(name, options=options)
        return train.base_model("test_tiny", name, epochs=1, splits=splits, cache_dir=home, options=QUIET)[1]

    _image_folder(folder, seed=0)
    first = base()
    err = capsys.readouterr().err
    assert first["cached"] is False
    assert f"no recipe for dataset {name!r}: default recipe 30 epochs" in err
    assert f"training test_tiny on {name}" in err and f"no cached test_tiny on {name}" in err
    assert base()["cached"] is True
    assert capsys.readouterr().err == ""

    _image_folder(folder, seed=1)  # other images, same path, same file names
    rebuilt = base()
    line = next(
        x for x in capsys.readouterr().err.splitlines() if x.startswith("automc: base model: training")
    )
    assert rebuilt["cached"] is False and rebuilt["weights_path"] != first["weights_path"]
    assert "differs in data content (" in line and first["key"]["data"][:12] in line
    assert rebuilt["data"]["identity"] == rebuilt["key"]["data"] != first["key"]["data"]
