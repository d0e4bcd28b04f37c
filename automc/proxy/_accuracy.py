"""Accuracy-style proxies: vanilla, adaptive BatchNorm (EagleEye) and KL to the teacher.

All three share one evaluation pass over ``ProxyData.val_*``; the adaptive-BN proxy
first recalibrates the candidate's BatchNorm statistics on ``ProxyData.calib_inputs``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from automc.errors import AutomcError
from automc.proxy._base import CachedProxy, Metric, ProxyFailure
from automc.proxy._data import ProxyData
from automc.train import TrainStep, distilled, kd_loss, recalibrate_bn, step_loss

SHORT_TRAIN_LR = 0.005
"""The ``short_train`` proxy's default learning rate (``automc.config.ProxyConfig.lr``). On
Fashion-MNIST, ten steps at 0.01 ranked 30 candidates like a 4-seed fine-tune to Kendall 0.58,
at 0.005 to 0.65 (``scripts/bench_proxy.py``, README "Measured results"): with Nesterov
momentum a larger step leaves each candidate at a noisier point of its trajectory."""


def _logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    out = model(x)
    if not isinstance(out, torch.Tensor) or out.dim() != 2:
        raise ProxyFailure(
            f"model output must be a (batch, classes) tensor, got {getattr(out, 'shape', type(out))}"
        )
    if not bool(torch.isfinite(out).all()):
        raise ProxyFailure("non-finite model outputs")
    return out


class _ValPassProxy(CachedProxy):
    """One evaluation pass over the val batches, optionally after BN recalibration."""

    def __init__(
        self,
        *,
        data: ProxyData,
        recalibrate: bool,
        with_accuracy: bool,
        teacher: nn.Module | None,
        cache_size: int,
    ) -> None:
        super().__init__(cache_size=cache_size)
        if recalibrate and not data.calib_inputs:
            raise AutomcError(f"proxy {self.name!r} needs calibration batches (ProxyData calib_batches >= 1)")
        self._data = data
        self._calib_inputs = data.calib_inputs
        self._recalibrate = recalibrate
        self._with_accuracy = with_accuracy
        self._teacher_logp: tuple[torch.Tensor, ...] | None = None
        if teacher is not None:
            self._teacher_logp = teacher_log_probs(teacher, data)

    def calibration_batches(self) -> tuple[torch.Tensor, ...]:
        """The search's calibration inputs (train split), e.g. for data-driven pruning criteria.

        They stay where the ``ProxyData`` was built (the CPU in a search), where candidates
        are compressed, whatever device :meth:`to` moved the scoring to.
        """
        return self._calib_inputs

    @property
    def device(self) -> torch.device:
        """Where candidates are scored (see :meth:`to`)."""
        return self._data.device

    def to(self, device: str | torch.device) -> _ValPassProxy:
        """Score candidates on ``device`` from now on; returns this proxy.

        Its batches and the teacher's outputs are copied there once; each candidate is
        moved there (in place) when it is scored. Cached scores are kept: a score does not
        depend on the device beyond floating-point rounding.
        """
        self._data = self._data.to(device)
        if self._teacher_logp is not None:
            self._teacher_logp = tuple(t.to(device) for t in self._teacher_logp)
        return self

    def __getstate__(self) -> dict[str, object]:
        """Pickled with every tensor on the CPU: a Ray worker given no GPU cannot load CUDA
        tensors; ``automc.search.ray_tune.run_trial`` moves it to the GPU a trial is given."""
        return {key: _on_cpu(value) for key, value in self.__dict__.items()}

    def _compute(self, model: nn.Module) -> dict[str, float]:
        data = self._data
        model.to(data.device)
        if self._recalibrate:
            recalibrate_bn(model, data.calib_inputs)
        else:
            model.eval()
        correct = torch.zeros((), dtype=torch.long, device=data.val_targets[0].device)
        loss_sum = torch.zeros((), dtype=torch.float64, device=correct.device)
        kl_sum = torch.zeros((), dtype=torch.float64, device=correct.device)
        with torch.inference_mode():
            for i, (x, y) in enumerate(zip(data.val_inputs, data.val_targets)):
                out = _logits(model, x)
                if self._with_accuracy:
                    correct += (out.argmax(dim=1) == y).sum()
                    loss_sum += F.cross_entropy(out.float(), y, reduction="sum").double()
                if self._teacher_logp is not None:
                    s_logp = F.log_softmax(out.float(), dim=1)
                    kl_sum += F.kl_div(
                        s_logp, self._teacher_logp[i], reduction="sum", log_target=True
                    ).double()
        n = data.n_val
        result: dict[str, float] = {}
        if self._with_accuracy:
            result["acc"] = int(correct) / n
            result["loss"] = float(loss_sum) / n
        if self._teacher_logp is not None:
            result["kl"] = max(0.0, float(kl_sum) / n)
        return result


def _on_cpu(value: object) -> object:
    """``value`` with its tensors on the CPU (a ``ProxyData`` or a tuple of tensors); anything else as is."""
    if isinstance(value, ProxyData):
        return value.to("cpu")
    if isinstance(value, tuple) and value and all(isinstance(t, torch.Tensor) for t in value):
        return tuple(t.cpu() for t in value)
    return value


def _teacher_logits(teacher: nn.Module, batches: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    """``teacher``'s float logits on ``batches``, in eval mode without gradients (its mode is restored)."""
    was_training = teacher.training
    teacher.eval()
    try:
        with torch.inference_mode():
            return tuple(teacher(x).float() for x in batches)
    finally:
        teacher.train(was_training)


def teacher_log_probs(teacher: nn.Module, data: ProxyData) -> tuple[torch.Tensor, ...]:
    """Log-softmax of ``teacher`` on the val batches, computed once in eval mode (its mode is restored).

    Raises:
        AutomcError: the teacher's outputs are not finite (a broken base model is the
            user's problem, not a candidate failure).
    """
    out = tuple(F.log_softmax(t, dim=1) for t in _teacher_logits(teacher, data.val_inputs))
    if not all(bool(torch.isfinite(t).all()) for t in out):
        raise AutomcError("the teacher (base model) produces non-finite outputs on the val split")
    return out


class AdaptiveBNProxy(_ValPassProxy):
    """Top-1 accuracy and CE loss on val after adaptive BatchNorm recalibration (EagleEye, ECCV 2020).

    The candidate is modified in place (its BatchNorm statistics are replaced) and left
    in eval mode: hand it a fresh candidate, never the base model. Not copied again.
    With a ``teacher``, the same pass also returns ``kl`` = mean KL(teacher || candidate),
    so accuracy and KL cost one recalibration.

    Returns ``{"acc", "loss"}`` (+ ``"kl"``).
    """

    name = "adaptive_bn"

    def __init__(self, *, data: ProxyData, teacher: nn.Module | None = None, cache_size: int = 256) -> None:
        self.metrics = (Metric("acc", "maximize"), Metric("loss", "minimize"))
        if teacher is not None:
            self.metrics += (Metric("kl", "minimize"),)
        super().__init__(
            data=data, recalibrate=True, with_accuracy=True, teacher=teacher, cache_size=cache_size
        )


class VanillaProxy(_ValPassProxy):
    """Top-1 accuracy and CE loss on val with the candidate's BatchNorm statistics as they are.

    After pruning, those statistics are stale, which is why this proxy ranks candidates
    worse than ``AdaptiveBNProxy``; it is the baseline. Returns ``{"acc", "loss"}``.
    """

    name = "vanilla"
    metrics: tuple[Metric, ...] = (Metric("acc", "maximize"), Metric("loss", "minimize"))

    def __init__(self, *, data: ProxyData, cache_size: int = 256) -> None:
        super().__init__(
            data=data, recalibrate=False, with_accuracy=True, teacher=None, cache_size=cache_size
        )


class KLToTeacherProxy(_ValPassProxy):
    """Mean KL(teacher || candidate) of softmax outputs on the val batches (label free).

    The teacher's outputs are computed once, at construction; the teacher is not kept.
    With ``recalibrate`` (default) the candidate's BatchNorm statistics are first
    re-estimated as in ``AdaptiveBNProxy`` (in place). Returns ``{"kl"}``.
    """

    name = "kl_teacher"
    metrics: tuple[Metric, ...] = (Metric("kl", "minimize"),)

    def __init__(
        self, *, data: ProxyData, teacher: nn.Module, recalibrate: bool = True, cache_size: int = 256
    ) -> None:
        super().__init__(
            data=data, recalibrate=recalibrate, with_accuracy=False, teacher=teacher, cache_size=cache_size
        )


class ShortTrainProxy(_ValPassProxy):
    """Val accuracy and loss after a few SGD steps, then adaptive BatchNorm recalibration.

    The candidate is trained in place for ``steps`` steps on ``ProxyData.train_*`` (fixed
    labelled batches, cycled), with the fine-tuning loss: knowledge distillation from the
    ``teacher`` (its logits on those batches computed once, here) or, without one,
    cross-entropy. SGD with Nesterov momentum 0.9, constant ``lr`` (default
    :data:`SHORT_TRAIN_LR`), weight decay 5e-4;
    random ops (dropout) draw from an RNG seeded with ``ProxyData.seed``.
    Its BatchNorm statistics are then recalibrated and it is scored on val as in
    :class:`AdaptiveBNProxy`. A pruned candidate judged before any training is judged on
    how much of the base's function survived the cut; a few steps show how well it
    recovers, which is what fine-tuning measures. It costs ``steps`` training steps
    more than adaptive BN.

    With the user's ``train_step`` (``automc.train.TrainStep``) its loss replaces the
    cross-entropy, distilled from the teacher when the step also returns the logits
    (``automc.train.distilled``). The step travels with the proxy (to Ray workers too),
    so it must pickle: a function defined at module level of an importable module.

    Returns ``{"acc", "loss"}`` (+ ``"kl"`` with a teacher); a loss that turns
    non-finite while training is a failed result.
    """

    name = "short_train"

    def __init__(
        self,
        *,
        data: ProxyData,
        teacher: nn.Module | None = None,
        steps: int = 10,
        lr: float = SHORT_TRAIN_LR,
        temperature: float = 4.0,
        alpha: float = 0.9,
        cache_size: int = 256,
        train_step: TrainStep | None = None,
    ) -> None:
        if not data.train_inputs:
            raise AutomcError(
                "proxy 'short_train' needs labelled train batches (ProxyData train_batches >= 1)"
            )
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise AutomcError(f"proxy 'short_train': steps must be a positive integer, got {steps!r}")
        if not lr > 0:
            raise AutomcError(f"proxy 'short_train': lr must be positive, got {lr!r}")
        self.metrics = (Metric("acc", "maximize"), Metric("loss", "minimize"))
        if teacher is not None:
            self.metrics += (Metric("kl", "minimize"),)
        super().__init__(
            data=data, recalibrate=True, with_accuracy=True, teacher=teacher, cache_size=cache_size
        )
        self.steps, self.lr = steps, lr
        self.train_step = train_step
        self._temperature, self._alpha = temperature, alpha
        self._teacher_train: tuple[torch.Tensor, ...] | None = None
        if teacher is not None:
            self._teacher_train = _teacher_logits(teacher, data.train_inputs)

    def to(self, device: str | torch.device) -> ShortTrainProxy:
        super().to(device)
        if self._teacher_train is not None:
            self._teacher_train = tuple(t.to(device) for t in self._teacher_train)
        return self

    def _compute(self, model: nn.Module) -> dict[str, float]:
        data = self._data
        model.to(data.device)
        params = [p for p in model.parameters() if p.requires_grad]
        if params:
            opt = torch.optim.SGD(params, lr=self.lr, momentum=0.9, nesterov=True, weight_decay=5e-4)
            model.train()
            # dropout draws from the global RNG: a forked, seeded one keeps scores deterministic
            with torch.random.fork_rng(), torch.enable_grad():
                torch.manual_seed(data.seed)
                for step in range(self.steps):
                    loss = self._step_loss(model, step % len(data.train_inputs))
                    if not bool(torch.isfinite(loss)):
                        raise ProxyFailure(f"training diverged at step {step + 1} (loss {float(loss)})")
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
            model.eval()
        return super()._compute(model)

    def _step_loss(self, model: nn.Module, i: int) -> torch.Tensor:
        """The training loss of train batch ``i``: cross-entropy or the user's step, distilled with a teacher."""
        x, y = self._data.train_inputs[i], self._data.train_targets[i]
        teacher = None if self._teacher_train is None else self._teacher_train[i]
        kd = {"temperature": self._temperature, "alpha": self._alpha}
        if self.train_step is None:
            out = _logits(model, x)
            return F.cross_entropy(out, y) if teacher is None else kd_loss(out, y, teacher, **kd)
        loss, logits = step_loss(self.train_step, model, (x, y))
        return loss if teacher is None or logits is None else distilled(loss, logits, teacher, **kd)
