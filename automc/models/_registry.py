"""Model registry: :data:`REGISTRY` of factories, ``create(name)``, ``tv:`` torchvision models.

A factory is called as ``factory(num_classes=..., in_channels=...)`` and returns a
randomly initialised ``nn.Module``. :func:`register` takes the description shown by
``automc list models`` from the first line of the factory's docstring unless one is
given. Tiny ``test_*`` models (``automc.testing.models``) are registered exactly like
the real ones so that tests can parametrize over ``names()``. ``tv:<name>`` is a prefix
handled by :func:`create`, not a registered entry.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import torch
from torch import nn

from automc.errors import AutomcError
from automc.models.user import refuse_from_data
from automc.registry import Registry

TV_PREFIX = "tv:"

Factory = Callable[..., nn.Module]

REGISTRY: Registry[Factory] = Registry(kind="model")
"""Model name -> ``factory(num_classes, in_channels) -> nn.Module``."""

PREFIX_FORMS: dict[str, str] = {
    f"{TV_PREFIX}<name>": "any torchvision classification model (random init, 3 channels)"
}
"""Model names :func:`create` accepts beyond :data:`REGISTRY` -> one-line description."""


def register(name: str, description: str | None = None) -> Callable[[Factory], Factory]:
    """Decorator registering ``factory(num_classes, in_channels) -> nn.Module`` under ``name``.

    Args:
        name: the model's name (``automc.models.create(name)``, ``--model name``).
        description: one line for ``automc list models``; by default the first line of
            the factory's docstring.

    Raises:
        ValueError: ``name`` is already registered, or there is no one-line description.
    """

    def deco(factory: Factory) -> Factory:
        doc_lines = (factory.__doc__ or "").strip().splitlines()
        return REGISTRY.register(name, description or (doc_lines[0] if doc_lines else ""))(factory)

    return deco


def names() -> list[str]:
    """Registered model names, sorted (``tv:<name>`` models are not listed)."""
    return REGISTRY.names()


def describe() -> dict[str, str]:
    """Registered model name -> one-line description."""
    return REGISTRY.describe()


def torchvision_names() -> list[str]:
    """Names of torchvision's classification models (usable as ``tv:<name>``)."""
    import torchvision

    return sorted(torchvision.models.list_models(module=torchvision.models))


def create(
    name: str,
    num_classes: int = 10,
    in_channels: int = 3,
    weights: str | Path | None = None,
) -> nn.Module:
    """Build a model by name, randomly initialised or loaded from a state_dict file.

    Args:
        name: a registered name (``automc list models``) or ``tv:<torchvision name>``. An
            import path ``package.module:factory`` is refused: names reach this function
            from data files too (a saved model, a config), and code is imported only by
            :func:`automc.models.user.build`, from a path the user gave.
        num_classes: size of the classifier output.
        in_channels: input image channels; torchvision models only accept 3.
        weights: optional path to a ``state_dict`` (or a dict holding one under
            ``"state_dict"``) saved with ``torch.save``. Loaded with
            ``weights_only=True``; keys and shapes must match the model exactly.

    Raises:
        AutomcError: unknown name, bad sizes, or a weights file that is missing,
            unreadable, not a state_dict, or does not fit the model; an import path.

    Caveat: torchvision models are always built with ``weights=None`` (nothing is ever
    downloaded); pass ``weights=PATH`` to load pretrained parameters you already have.
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise AutomcError(f"num_classes must be a positive integer, got {num_classes!r}")
    if isinstance(in_channels, bool) or not isinstance(in_channels, int) or in_channels < 1:
        raise AutomcError(f"in_channels must be a positive integer, got {in_channels!r}")
    refuse_from_data(name, "automc.models.create")
    if name.startswith(TV_PREFIX):
        model = _create_torchvision(name[len(TV_PREFIX) :], num_classes=num_classes, in_channels=in_channels)
    else:
        if name not in REGISTRY:
            raise AutomcError(
                f"unknown model {name!r} (known: {', '.join(REGISTRY.names())}; or {TV_PREFIX}<torchvision name>)"
            )
        model = REGISTRY.get(name)(num_classes=num_classes, in_channels=in_channels)
    if weights is not None:
        load_weights(model, weights)
    return model


def _create_torchvision(tv_name: str, *, num_classes: int, in_channels: int) -> nn.Module:
    import torchvision

    known = torchvision_names()
    if tv_name not in known:
        raise AutomcError(
            f"unknown torchvision model {tv_name!r} (torchvision classification models: {', '.join(known)})"
        )
    if in_channels != 3:
        raise AutomcError(
            f"{TV_PREFIX}{tv_name}: torchvision models take 3 input channels, got in_channels={in_channels}"
        )
    return torchvision.models.get_model(tv_name, weights=None, num_classes=num_classes)


def _shorten(keys: list[str], limit: int = 5) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ...({len(keys) - limit} more)" if len(keys) > limit else "")


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a state_dict from ``path`` with ``torch.load(weights_only=True)``.

    Accepts a plain state_dict or a dict with a ``"state_dict"`` entry; strips a
    ``module.`` prefix present on every key (DataParallel checkpoints).

    Raises:
        AutomcError: missing file, unreadable/corrupt file, or not a state_dict.
    """
    p = Path(path)
    if not p.is_file():
        raise AutomcError(f"{p}: no such weights file")
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # any failure to unpickle a user's file is a user-facing error
        first = str(e).strip().splitlines()[0] if str(e).strip() else e.__class__.__name__
        raise AutomcError(f"{p}: cannot load weights ({first[:200]})") from None
    if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not obj:
        raise AutomcError(
            f"{p}: expected a state_dict (a mapping of parameter names to tensors), got {type(obj).__name__}"
        )
    bad = [str(k) for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise AutomcError(f"{p}: not a state_dict: entries that are not name -> tensor: {_shorten(bad)}")
    state = dict(obj)
    if all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    return state


def load_weights(model: nn.Module, path: str | Path) -> nn.Module:
    """Load a state_dict file into ``model`` in place, strictly; returns ``model``.

    Raises:
        AutomcError: see :func:`read_state_dict`, plus missing/unexpected keys and
            shape mismatches, all named in one line.
    """
    state = read_state_dict(path)
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    problems = []
    if missing:
        problems.append(f"missing keys: {_shorten(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_shorten(unexpected)}")
    shapes = [
        f"{k} {tuple(state[k].shape)} in file vs {tuple(own[k].shape)} in model"
        for k in own
        if k in state and tuple(state[k].shape) != tuple(own[k].shape)
    ]
    if shapes:
        problems.append(f"shape mismatch: {_shorten(shapes, 3)}")
    if problems:
        raise AutomcError(f"{Path(path)}: {'; '.join(problems)}")
    model.load_state_dict(state, strict=True)
    return model
