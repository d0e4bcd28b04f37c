"""``SearchConfig``: everything one search run needs, as one frozen, validated record.

A config file carries a header and any subset of the sections (missing keys keep their
defaults)::

    schema: automc/search-config
    version: 1
    base: {model: resnet20}
    data: {dataset: digits}
    budgets: [flops=0.3]
    controller: {name: optuna-tpe, trials: 60}

Parsing, type checks, ``to_dict`` and overrides are derived from the dataclass fields and
their type hints, so a new setting is one annotated line in its section (plus a
``check=`` in its ``field`` metadata when its values need more than a type check).
Supported field types: ``str``, ``int``, ``float``, ``bool``, ``tuple[str, ...]`` and
``X | None`` of those; a ``bool`` is never a number and an ``int`` is fine for a ``float``.

Every problem is an :class:`~automc.errors.AutomcError` whose one line names the source
and the dotted field, e.g. ``run.yaml: controller.trials: must be >= 1, got 0``. Settings
given by their flat (command-line) names name the flag instead, e.g.
``--trials must be >= 1, got 0``.

Caveat: names (model, dataset, controller, space, profile) are only checked for being
non-empty strings here; whether they exist is checked when the run starts.
"""

from __future__ import annotations

import difflib
import json
import math
import os
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any, TypeGuard, Union, get_args, get_origin, get_type_hints

import yaml

from automc.errors import AutomcError
from automc.schema.common import Problems, check_header, parse_json, read_text, read_yaml

SCHEMA = "automc/search-config"
VERSIONS = {1}
SEARCH_PROXIES = ("adaptive_bn", "short_train")
"""Proxies a search can score candidates with."""

Check = Callable[[Any], str | None]
"""A value check: ``None`` when fine, else a message such as ``must be >= 1, got 0``."""


def _at_least(low: float) -> Check:
    return lambda v: None if v is None or v >= low else f"must be >= {low}, got {v!r}"


def _positive(v: Any) -> str | None:
    return None if v is None or v > 0 else f"must be > 0, got {v!r}"


def _positive_number(v: Any) -> str | None:
    """The learning-rate rule of ``automc.train.check_lr``: unset, or positive and finite."""
    return None if v is None or (math.isfinite(v) and v > 0) else f"must be a positive number, got {v}"


def _positive_integer(v: int) -> str | None:
    return None if v >= 1 else f"must be a positive integer, got {v!r}"


def _unit_interval(v: float) -> str | None:
    return None if 0.0 <= v <= 1.0 else f"must be in [0, 1], got {v!r}"


FINETUNE_CHOICES = ("spread", "best")
"""How the fine-tuned winners are chosen (``FinetuneConfig.choose``)."""


def _finetune_choice(v: str) -> str | None:
    if v in FINETUNE_CHOICES:
        return None
    return f"unknown winner choice {v!r} (known: {', '.join(FINETUNE_CHOICES)})"


def _search_proxy(v: str) -> str | None:
    if v in SEARCH_PROXIES:
        return None
    return f"unknown search proxy {v!r} (known: {', '.join(SEARCH_PROXIES)})"


def _warm_start(v: str | None) -> str | None:
    from automc.search.warm_start import parse_warm_start

    try:
        parse_warm_start(v)
    except AutomcError as e:
        return str(e)
    return None


def _budgets(v: tuple[str, ...]) -> str | None:
    from automc.budget import parse_budgets

    try:
        parse_budgets(list(v))
    except AutomcError as e:
        return str(e)
    return None


def _objectives(v: tuple[str, ...]) -> str | None:
    from automc.budget import parse_objectives

    try:
        parse_objectives(list(v))
    except AutomcError as e:
        return str(e)
    return None


def _json_object(v: str | None) -> str | None:
    if v is None:
        return None
    try:
        value = json.loads(v)
    except json.JSONDecodeError as e:
        return f"must be a JSON object such as '{{\"width\": 2}}' ({e.msg} at column {e.colno})"
    return None if isinstance(value, dict) else f"must be a JSON object such as '{{\"width\": 2}}', got {v!r}"


def _device(v: str) -> str | None:
    from automc.device import check_name

    return check_name(v)


def _channels(v: int | None) -> str | None:
    return None if v in (None, 1, 3) else f"must be 1 or 3, got {v!r}"


def _data_option(parser: str) -> Check:
    """A check by ``automc.data.options.<parser>`` (torch-free): its ``ValueError`` is the problem."""

    def check(v: str | None) -> str | None:
        from automc.data import options

        try:
            if v is not None:
                getattr(options, parser)(v)
        except ValueError as e:
            return str(e)
        return None

    return check


def _checked(default: Any, check: Check) -> Any:
    """A field with a default and a value check."""
    return field(default=default, metadata={"check": check})


class _Record:
    """Base of the config records: normalises field values after construction.

    Lists become tuples, ``os.PathLike`` becomes ``str`` and ints in ``float`` fields
    become floats, so equal settings give equal (and hashable) records.
    """

    def __post_init__(self) -> None:
        hints = _hints(type(self))
        for f in fields(self):  # type: ignore[arg-type]
            object.__setattr__(self, f.name, _normalise(hints[f.name], getattr(self, f.name)))


@dataclass(frozen=True, kw_only=True)
class DataConfig(_Record):
    """The dataset: ``digits`` (embedded), ``fashion-mnist``, ``mnist``, ``cifar10``,
    ``imagefolder:PATH``, ``synthetic``; ``None`` fields = the dataset's default.

    Attributes:
        dataset: dataset name.
        root: folder of a local dataset (cifar10, fashion-mnist, mnist; the base of a
            relative imagefolder path).
        in_channels: image channels given to the model (1 or 3).
        input_size: side of the square images given to the model.
        normalize: ``none``, ``imagenet``, ``train`` (train-split statistics) or ``MEAN/STD``.
        augment: training augmentation: ``none``, ``crop``, ``flip`` or ``crop+flip``.
        train_subset: train on a seeded random subset of this many train images.
    """

    dataset: str = "digits"
    root: str | None = None
    in_channels: int | None = _checked(None, _channels)
    input_size: int | None = _checked(None, _at_least(8))
    normalize: str | None = _checked(None, _data_option("parse_normalize"))
    augment: str | None = _checked(None, _data_option("canonical_augment"))
    train_subset: int | None = _checked(None, _at_least(1))


@dataclass(frozen=True, kw_only=True)
class BaseConfig(_Record):
    """The base (uncompressed) model and how it is trained when no weights are given.

    Attributes:
        model: zoo name, ``tv:<torchvision model>``, or ``package.module:factory`` of your
            own code (imported only when given as ``--model`` or ``model=``; see
            ``automc.models.user``).
        model_kwargs: JSON object of keyword arguments for a ``package.module:factory`` model.
        weights: state_dict file of the base model; ``None`` = train and cache one.
        epochs: base-training epochs; ``None`` = the dataset recipe's.
        lr: peak base-training learning rate; ``None`` = the dataset recipe's.
    """

    model: str = "resnet20"
    model_kwargs: str | None = _checked(None, _json_object)
    weights: str | None = None
    epochs: int | None = _checked(None, _at_least(0))
    lr: float | None = _checked(None, _positive_number)


@dataclass(frozen=True, kw_only=True)
class ControllerConfig(_Record):
    """The search controller.

    Attributes:
        name: registered controller (``automc list controllers``).
        trials: total scored trials (over-budget candidates the cost model only priced do not
            count, up to ``automc.search.base.PRICED_ONLY_PER_TRIAL`` times as many in all); a
            resumed search stops at this total.
        warm_start: plans evaluated first (``optuna-tpe``, ``optuna-nsga2``, ``amc``;
            :mod:`automc.search.warm_start`): ``uniform`` (one keep ratio for every group,
            the largest that meets the budgets, in float and at int8), ``global`` (Torch-Pruning's
            global magnitude ranking at the budget), ``ilp`` (the ``ilp`` solver's plans),
            several joined by ``+`` (``uniform+global``), or ``none``; ``None`` = the
            controller's default (``uniform``).
    """

    name: str = "optuna-tpe"
    trials: int = _checked(50, _at_least(1))
    warm_start: str | None = _checked(None, _warm_start)


@dataclass(frozen=True, kw_only=True)
class ProxyConfig(_Record):
    """How candidates are scored during the search.

    Attributes:
        name: ``short_train`` (``steps`` SGD steps distilled from the base model, then
            BatchNorm recalibration) or ``adaptive_bn`` (recalibration only).
        steps: SGD steps of the ``short_train`` proxy.
        lr: its constant learning rate (``scripts/bench_proxy.py``: a smaller step ranks
            candidates more like the fine-tune does; README, "Measured results").
        calib_batches: batches for BatchNorm recalibration.
        batch_size: batch size of the recalibration and proxy batches.
    """

    name: str = _checked("short_train", _search_proxy)
    steps: int = _checked(10, _positive_integer)
    lr: float = _checked(0.005, _positive_number)
    calib_batches: int = _checked(4, _at_least(1))
    batch_size: int = _checked(128, _at_least(1))


@dataclass(frozen=True, kw_only=True)
class FinetuneConfig(_Record):
    """Fine-tuning of the Pareto winners with knowledge distillation.

    Attributes:
        top: number of winners (0 = none).
        choose: ``spread``: spread along the Pareto front of the feasible trials (the
            trade-off, for the report); ``best``: the feasible trials best in the first
            objective (the proxy's accuracy), whatever their cost: under a hard budget, the
            candidates most likely to be the most accurate model that fits.
        epochs: fine-tuning epochs per winner.
        kd_temperature: distillation temperature.
        kd_alpha: weight of the distillation loss (``1 - kd_alpha``: the labels).
    """

    top: int = _checked(3, _at_least(0))
    choose: str = _checked("spread", _finetune_choice)
    epochs: int = _checked(3, _at_least(0))
    kd_temperature: float = _checked(4.0, _positive)
    kd_alpha: float = _checked(0.9, _unit_interval)


@dataclass(frozen=True, kw_only=True)
class HardwareConfig(_Record):
    """The target device (latency is priced and measured on it) and where training runs.

    Attributes:
        profile: device profile name or YAML path; ``auto`` (default) = the shipped ONNX
            Runtime CPU profile measured on a CPU with this one's instruction sets
            (``automc.schema.hw_profile.auto_profile``); ``None`` = no profile (no latency or
            energy budgets and objectives).
        device: where base training, proxy scoring, fine-tuning and accuracy evaluation
            run: ``auto`` (CUDA when available), ``cpu``, ``cuda`` or ``cuda:N``. Latency
            is measured as the profile says, whatever this is.
        amp: mixed precision (bf16 autocast, fp16 with loss scaling where bf16 is not
            supported) for training and fine-tuning on CUDA; no effect on the CPU.
        threads: torch intra-op threads for the run; ``None`` = ``$AUTOMC_THREADS``,
            ``$OMP_NUM_THREADS`` or torch's default.
        workers: DataLoader worker processes for training and evaluation (batches stay the
            same for a seed); ``None`` = 0 on the CPU, ``min(4, usable cores)`` on CUDA,
            where batches are also pinned (``automc.device.Placement``).
        channel_block: align pruned channel counts to a runtime's blocked channel layout of
            this many channels per block (``automc.space.SearchSpace.bind``); ``None`` = the
            profile's ``runtime.channel_block`` when latency is a budget or an objective, else
            no alignment; 0 or 1 = no alignment.
    """

    profile: str | None = "auto"
    device: str = _checked("auto", _device)
    amp: bool = True
    threads: int | None = _checked(None, _at_least(1))
    workers: int | None = _checked(None, _at_least(0))
    channel_block: int | None = _checked(None, _at_least(0))


@dataclass(frozen=True, kw_only=True)
class DistributedConfig(_Record):
    """Ray settings, used with the ``ray`` controller only.

    Attributes:
        ray_address: Ray cluster to join; ``None`` = ``RAY_ADDRESS`` or a local cluster.
        cpus_per_trial: CPUs reserved per trial.
        gpus_per_trial: GPUs reserved per trial.
    """

    ray_address: str | None = None
    cpus_per_trial: float = _checked(1.0, _positive)
    gpus_per_trial: float = _checked(0.0, _at_least(0))


@dataclass(frozen=True, kw_only=True)
class OutputConfig(_Record):
    """Where results go and what is written.

    Attributes:
        out: run/report folder; ``None`` = ``reports/<study>``.
        storage: Optuna storage URL or path; ``None`` = ``sqlite:///<out>/study.db``.
        study: study name; ``None`` = ``<model>-<dataset>-<controller>-s<seed>``.
        new_study: start a fresh study when the named one exists (``<study>-2``, ``-3``, ...)
            instead of resuming it.
        export_onnx: export the winners to ONNX.
        progress: show progress bars.
    """

    out: str | None = None
    storage: str | None = None
    study: str | None = None
    new_study: bool = False
    export_onnx: bool = True
    progress: bool = True


@dataclass(frozen=True, kw_only=True)
class SearchConfig(_Record):
    """One search run: what to compress, under which budgets, how to search and report.

    Construction validates every field (types and values); see the module docstring.

    Attributes:
        data: the dataset.
        base: the base model.
        space: search-space YAML path or shipped name (prune, quant, lowrank, joint).
        budgets: hard budgets such as ``flops=0.3`` or ``latency=2ms`` (``automc.budget``).
        objectives: objectives such as ``acc`` and ``macs`` (``automc.budget``).
        controller: the search controller.
        proxy: how candidates are scored.
        finetune: fine-tuning of the winners.
        hardware: the target device.
        distributed: Ray settings.
        output: where results go.
        seed: random seed of the whole run.
    """

    data: DataConfig = field(default_factory=DataConfig)
    base: BaseConfig = field(default_factory=BaseConfig)
    space: str = "joint"
    budgets: tuple[str, ...] = _checked(("flops=0.3",), _budgets)
    objectives: tuple[str, ...] = _checked(("acc", "macs"), _objectives)
    controller: ControllerConfig = field(default_factory=ControllerConfig)
    proxy: ProxyConfig = field(default_factory=ProxyConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    hardware: HardwareConfig = field(default_factory=HardwareConfig)
    distributed: DistributedConfig = field(default_factory=DistributedConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    seed: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        probs = Problems("config")
        for name, section in _sections(SearchConfig).items():
            if not isinstance(getattr(self, name), section):
                probs.add(name, f"must be a {section.__name__}, got {getattr(self, name)!r}")
        probs.raise_if_any()
        for path, leaf in _leaves(SearchConfig).items():
            message = _problem(leaf, _get(self, path))
            if message:
                probs.add(path, message)
        probs.raise_if_any()

    # ---- dict / file round trip ----
    def to_dict(self) -> dict[str, Any]:
        """Plain data with the ``schema``/``version`` header; tuples become lists."""
        return {"schema": SCHEMA, "version": max(VERSIONS), **_as_plain(self)}

    @classmethod
    def from_dict(cls, d: Any, *, where: str = "config") -> SearchConfig:
        """Parse ``to_dict`` output (or a hand-written file's data); missing keys keep defaults.

        Raises:
            AutomcError: a wrong header, unknown keys, wrong types or bad values; one line
                starting with ``where`` and naming every bad dotted field.
        """
        probs = check_header(d, where, schema=SCHEMA, versions=VERSIONS)
        values: dict[str, Any] = {}
        _collect(cls, {k: v for k, v in d.items() if k not in ("schema", "version")}, "", values, probs)
        probs.raise_if_any()
        return _build(cls, values)

    @classmethod
    def load(cls, path: str | Path) -> SearchConfig:
        """Read a config file: JSON for ``.json``, YAML (``safe_load``) otherwise."""
        p = Path(path)
        data = parse_json(read_text(p), str(p)) if p.suffix.lower() == ".json" else read_yaml(p)
        return cls.from_dict(data, where=str(p))

    def dump(self, path: str | Path) -> Path:
        """Write the config as YAML (``.yaml``/``.yml``) or JSON (``.json``); returns the path.

        Parent folders are created. ``SearchConfig.load(path)`` gives back an equal config.
        """
        p = Path(path)
        suffix = p.suffix.lower()
        if suffix == ".json":
            text = json.dumps(self.to_dict(), indent=2) + "\n"
        elif suffix in (".yaml", ".yml"):
            text = yaml.safe_dump(self.to_dict(), sort_keys=False)
        else:
            raise AutomcError(f"{p}: config files end in .yaml, .yml or .json, not {p.suffix!r}")
        try:
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(text, encoding="utf-8")
        except OSError as e:
            raise AutomcError(f"{p}: cannot write the config ({e.__class__.__name__})") from None
        return p

    # ---- overrides ----
    def with_overrides(self, **settings: Any) -> SearchConfig:
        """A copy with some settings replaced, validated.

        Keys are the flat names of :data:`FLAT_NAMES` (``trials=60``, ``model="resnet20"``)
        or dotted fields (``**{"controller.trials": 60}``). A problem with a flat name is
        reported under its command-line flag (``--trials must be >= 1, got 0``).

        Raises:
            AutomcError: an unknown name (listing the known ones), a wrong type or a bad value.
        """
        leaves = _leaves(SearchConfig)
        messages: list[str] = []
        values: dict[str, Any] = {}
        for name, raw in settings.items():
            path = FLAT_NAMES.get(name, name)
            if path not in leaves:
                messages.append(_unknown_setting(name, leaves))
                continue
            value = _normalise(leaves[path].hint, _comma_list(leaves[path].hint, raw))
            message = _problem(leaves[path], value)
            if message:
                label = flag_for(name) if name in FLAT_NAMES else path
                # "must ..." reads on from the flag (today's wording); other messages follow a colon.
                sep = " " if message.startswith("must") else ": "
                messages.append(f"{label}{sep}{message}")
            values[path] = value
        if messages:
            raise AutomcError("; ".join(messages))
        return _replace_paths(self, values)


FLAT_NAMES: Mapping[str, str] = types.MappingProxyType(
    {
        "model": "base.model",
        "model_kwargs": "base.model_kwargs",
        "weights": "base.weights",
        "base_epochs": "base.epochs",
        "base_lr": "base.lr",
        "dataset": "data.dataset",
        "data_root": "data.root",
        "in_channels": "data.in_channels",
        "input_size": "data.input_size",
        "normalize": "data.normalize",
        "augment": "data.augment",
        "train_subset": "data.train_subset",
        "space": "space",
        "budgets": "budgets",
        "objectives": "objectives",
        "controller": "controller.name",
        "trials": "controller.trials",
        "warm_start": "controller.warm_start",
        "profile": "hardware.profile",
        "device": "hardware.device",
        "amp": "hardware.amp",
        "threads": "hardware.threads",
        "workers": "hardware.workers",
        "channel_block": "hardware.channel_block",
        "storage": "output.storage",
        "study": "output.study",
        "new_study": "output.new_study",
        "out": "output.out",
        "export_onnx": "output.export_onnx",
        "progress": "output.progress",
        "seed": "seed",
        "finetune_top": "finetune.top",
        "finetune_choose": "finetune.choose",
        "finetune_epochs": "finetune.epochs",
        "kd_temperature": "finetune.kd_temperature",
        "kd_alpha": "finetune.kd_alpha",
        "calib_batches": "proxy.calib_batches",
        "batch_size": "proxy.batch_size",
        "proxy": "proxy.name",
        "proxy_steps": "proxy.steps",
        "proxy_lr": "proxy.lr",
        "ray_address": "distributed.ray_address",
        "cpus_per_trial": "distributed.cpus_per_trial",
        "gpus_per_trial": "distributed.gpus_per_trial",
    }
)
"""Flat setting name (the keyword of ``automc.search`` and the CLI flag) -> dotted field."""

_FLAG_SPELLINGS: Mapping[str, str] = {
    "budgets": "--budget",
    "export_onnx": "--no-onnx",
    "progress": "--quiet",
    "amp": "--no-amp",
}


def flag_for(name: str) -> str:
    """The ``automc search`` flag of a flat setting name (``base_lr`` -> ``--base-lr``)."""
    return _FLAG_SPELLINGS.get(name, "--" + name.replace("_", "-"))


def default_of(path: str) -> Any:
    """The default value of a dotted field (``controller.trials`` -> 50)."""
    return _get(SearchConfig(), path)


# ---- the machinery behind the records: derived from fields and type hints ----
@dataclass(frozen=True, kw_only=True)
class _Leaf:
    hint: Any
    check: Check | None


_HINTS: dict[type, dict[str, Any]] = {}
_LEAVES: dict[tuple[type, str], dict[str, _Leaf]] = {}


def _hints(cls: type) -> dict[str, Any]:
    if cls not in _HINTS:
        _HINTS[cls] = get_type_hints(cls)
    return _HINTS[cls]


def _is_section(hint: Any) -> TypeGuard[type]:
    return isinstance(hint, type) and is_dataclass(hint)


def _sections(cls: type) -> dict[str, type]:
    return {name: hint for name, hint in _hints(cls).items() if _is_section(hint)}


def _leaves(cls: type, prefix: str = "") -> dict[str, _Leaf]:
    """Dotted path -> type hint and check of every setting under ``cls``."""
    if (cls, prefix) in _LEAVES:
        return _LEAVES[cls, prefix]
    out: dict[str, _Leaf] = {}
    hints = _hints(cls)
    for f in fields(cls):
        hint = hints[f.name]
        if _is_section(hint):
            out.update(_leaves(hint, f"{prefix}{f.name}."))
        else:
            out[prefix + f.name] = _Leaf(hint=hint, check=f.metadata.get("check"))
    _LEAVES[cls, prefix] = out
    return out


def _get(record: Any, path: str) -> Any:
    for part in path.split("."):
        record = getattr(record, part)
    return record


def _optional(hint: Any) -> tuple[Any, bool]:
    """``X | None`` -> ``(X, True)``; any other hint -> ``(hint, False)``."""
    if get_origin(hint) in (Union, types.UnionType):
        args = [a for a in get_args(hint) if a is not type(None)]
        if len(args) == 1 and len(get_args(hint)) == 2:
            return args[0], True
    return hint, False


def _comma_list(hint: Any, value: Any) -> Any:
    """A keyword setting's comma-separated string as the tuple of strings it lists, where the
    setting is one (``objectives="acc,macs"``, as on the command line); else ``value``. Files
    stay strict: a list there is written as a list."""
    hint, _ = _optional(hint)
    if get_origin(hint) is tuple and set(get_args(hint)) <= {str, Ellipsis} and isinstance(value, str):
        return tuple(t.strip() for t in value.split(",") if t.strip())
    return value


def _normalise(hint: Any, value: Any) -> Any:
    """Convert equivalent spellings: list -> tuple, PathLike -> str, int -> float."""
    hint, _ = _optional(hint)
    if get_origin(hint) is tuple and isinstance(value, list | tuple):
        (item,) = {a for a in get_args(hint) if a is not Ellipsis}
        return tuple(_normalise(item, v) for v in value)
    if hint is str and isinstance(value, os.PathLike):
        return os.fspath(value)
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def _type_problem(hint: Any, value: Any) -> str | None:
    hint, optional = _optional(hint)
    if value is None:
        return None if optional else f"must not be null, got {value!r}"
    if hint is bool:
        return None if isinstance(value, bool) else f"must be true or false, got {value!r}"
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return None
        return f"must be an integer, got {value!r}"
    if hint is float:
        if isinstance(value, float):
            return None if math.isfinite(value) else f"must be finite, got {value!r}"
        return f"must be a number, got {value!r}{_yaml_number_hint(value)}"
    if hint is str:
        return None if isinstance(value, str) and value else f"must be a non-empty string, got {value!r}"
    if get_origin(hint) is tuple:
        if isinstance(value, tuple) and all(isinstance(v, str) and v for v in value):
            return None
        return f"must be a list of non-empty strings, got {value!r}"
    raise TypeError(f"config field type {hint!r} is not supported")


def _yaml_number_hint(value: Any) -> str:
    try:
        float(value)
    except (TypeError, ValueError):
        return ""
    return " (text, not a number: in YAML write 1.0e-3, not 1e-3)" if isinstance(value, str) else ""


def _problem(leaf: _Leaf, value: Any) -> str | None:
    """The type problem of ``value``, else its value problem, else ``None``."""
    hint, _ = _optional(leaf.hint)
    if value is not None and hint is float and isinstance(value, float) and leaf.check:
        # A field's own check words its message (e.g. nan is "not a positive number").
        return leaf.check(value) or _type_problem(leaf.hint, value)
    return _type_problem(leaf.hint, value) or (leaf.check(value) if leaf.check else None)


def _collect(cls: type, d: Mapping[str, Any], prefix: str, values: dict[str, Any], probs: Problems) -> None:
    """Check mapping ``d`` against record ``cls``; valid leaves go into ``values`` by path."""
    hints = _hints(cls)
    names = [f.name for f in fields(cls)]
    for key in sorted(set(d) - set(names), key=str):
        probs.add(f"{prefix}{key}", "unknown key")
    for name in (n for n in names if n in d):
        path, hint, raw = prefix + name, hints[name], d[name]
        if _is_section(hint):
            sub = probs.mapping(raw, path)
            if sub is not None:
                _collect(hint, sub, f"{path}.", values, probs)
            continue
        value = _normalise(hint, raw)
        message = _problem(_leaves(SearchConfig)[path], value)
        if message:
            probs.add(path, message)
        else:
            values[path] = value


def _build(cls: type, values: Mapping[str, Any], prefix: str = "") -> Any:
    """A record of type ``cls`` from leaf values by dotted path (absent = default)."""
    kwargs: dict[str, Any] = {}
    for f in fields(cls):
        path = prefix + f.name
        hint = _hints(cls)[f.name]
        if _is_section(hint):
            kwargs[f.name] = _build(hint, values, f"{path}.")
        elif path in values:
            kwargs[f.name] = values[path]
    return cls(**kwargs)


def _replace_paths(record: Any, values: Mapping[str, Any], prefix: str = "") -> Any:
    """A copy of ``record`` with leaf values replaced by dotted path."""
    changes: dict[str, Any] = {}
    for f in fields(record):
        path = prefix + f.name
        if f.name in _sections(type(record)):
            if any(p.startswith(f"{path}.") for p in values):
                changes[f.name] = _replace_paths(getattr(record, f.name), values, f"{path}.")
        elif path in values:
            changes[f.name] = values[path]
    return replace(record, **changes) if changes else record


def _as_plain(record: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in fields(record):
        v = getattr(record, f.name)
        out[f.name] = _as_plain(v) if is_dataclass(v) else list(v) if isinstance(v, tuple) else v
    return out


def _unknown_setting(name: str, leaves: Mapping[str, _Leaf]) -> str:
    known = sorted(FLAT_NAMES)
    close = difflib.get_close_matches(name, [*known, *leaves], n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return (
        f"unknown setting {name!r}{hint} (known: {', '.join(known)}; or a dotted field such as "
        "controller.trials)"
    )
