"""Trace a model once: its conv/linear layers and their channel dependency groups.

``layers(model, x)`` lists every ``nn.Conv2d`` and ``nn.Linear`` that runs in
``model(x)``, in execution order, as :class:`~automc.plan.LayerSpec` records (shapes from
forward hooks, MACs and parameter counts, dependency group, input segments).

Channel coupling comes from Torch-Pruning's ``DependencyGraph``: the output channels of
one layer, pruned, drag along every layer, BatchNorm and consumer they are tied to by
residual adds, concatenation and depthwise convolutions. Layers whose output channels
fall in one Torch-Pruning group share one ``group`` id (the execution index of the
group's first layer).

Caveats, stated plainly:
    * Only ``nn.Conv2d`` and ``nn.Linear`` are layers. Multiply-accumulate work done
      outside them (``Conv1d``, ``ConvTranspose2d``, ``MultiheadAttention``, an LSTM, an
      attention ``matmul``, a custom layer calling ``F.conv2d``: any of
      :data:`_COMPUTE_OPS`, seen through a ``TorchFunctionMode`` during the traced
      forward) is recorded per innermost module in :attr:`GraphInfo.unmodelled`, and
      :func:`layers` refuses such a model, so its cost is never under-counted silently.
    * The model is traced in eval mode; layers that do not run in eval mode (e.g.
      GoogLeNet's auxiliary classifiers) are not listed and are not kept consistent by
      pruning, so the compressed model only runs in eval mode's code path.
    * A module called several times per forward is listed once with the shapes of its
      first call and the MACs of all calls.
    * ``group == -1`` (not prunable) when the output channels reach the model output
      (the classifier), when the group touches a grouped, non-depthwise convolution
      (Torch-Pruning's low-level pruner does not keep the per-group layout of such convs
      consistent), when coupled layers disagree on the channel count, or when a
      consumer reads the channels through an irregular index mapping (e.g. a channel
      shuffle), or when the channels meet others in a concatenation or split whose offsets
      Torch-Pruning cannot infer (a ``torch.cat`` followed by a flatten).
      :attr:`GraphInfo.unprunable` says which reason applied to each layer.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import torch
import torch_pruning as tp
from torch import nn
from torch.overrides import TorchFunctionMode

from automc.errors import UnsupportedLayerError
from automc.plan import NOT_PRUNABLE, LayerSpec

__all__ = ["GraphInfo", "GroupInfo", "count_macs", "layer_kind", "layers", "trace"]


@dataclass(frozen=True, kw_only=True)
class GroupInfo:
    """One prunable dependency group.

    Attributes:
        id: the group id (``LayerSpec.group``).
        channels: number of coupled output channels.
        producers: names of the conv/linear layers whose output channels are the group.
        norms: names of BatchNorm layers normalising exactly these channels.
        consumers: ``(name, offset, mult)``: layers reading the channels as input
            features ``offset .. offset + channels * mult``.
    """

    id: int
    channels: int
    producers: tuple[str, ...]
    norms: tuple[str, ...] = ()
    consumers: tuple[tuple[str, int, int], ...] = ()


@dataclass(frozen=True, kw_only=True)
class GraphInfo:
    """The traced layers of one model instance plus its Torch-Pruning dependency graph.

    Attributes:
        model: the traced model (the dependency graph refers to its modules).
        layers: conv/linear layers in execution order.
        groups: prunable group id -> :class:`GroupInfo`.
        unprunable: layer name -> why its output channels cannot be pruned.
        dependency_graph: the ``torch_pruning.DependencyGraph`` built on ``model``.
        unmodelled: module name (``<model>`` for the root) -> the compute ops it called
            outside conv/linear layers, which automc cannot price or compress (see the
            module docstring).
    """

    model: nn.Module
    layers: tuple[LayerSpec, ...]
    groups: Mapping[int, GroupInfo]
    unprunable: Mapping[str, str]
    dependency_graph: Any
    unmodelled: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    def module(self, name: str) -> nn.Module:
        return self.model.get_submodule(name)

    def prune_group(self, group_id: int, remove: list[int]) -> None:
        """Remove channels ``remove`` (indices into the group) from every coupled layer."""
        root = self.module(self.groups[group_id].producers[0])
        dg = self.dependency_graph
        fn = dg.get_pruner_of_module(root).prune_out_channels
        dg.get_pruning_group(root, fn, list(remove)).prune()


def layer_kind(module: nn.Module) -> str:
    """``conv2d``, ``dwconv2d``, ``grouped`` or ``linear``."""
    if isinstance(module, nn.Linear):
        return "linear"
    if isinstance(module, nn.Conv2d):
        if module.groups == 1:
            return "conv2d"
        if module.groups == module.in_channels == module.out_channels:
            return "dwconv2d"
        return "grouped"
    raise UnsupportedLayerError(f"not a conv2d/linear layer: {type(module).__name__}")


_COMPUTE_OPS = frozenset(
    {
        "matmul", "__matmul__", "__rmatmul__", "mm", "bmm", "baddbmm", "addmm", "addbmm",
        "addmv", "mv", "einsum", "tensordot", "linear", "bilinear", "conv1d", "conv2d",
        "conv3d", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d",
        "scaled_dot_product_attention", "multi_head_attention_forward", "lstm", "gru",
        "rnn_tanh", "rnn_relu", "lstm_cell", "gru_cell", "rnn_tanh_cell", "rnn_relu_cell",
    }
)  # fmt: skip
"""Names of the torch functions that multiply-accumulate (matrix products, convolutions,
attention, recurrent cells). Called outside an ``nn.Conv2d``/``nn.Linear`` they are work
the layer table does not hold."""


class _ComputeOutsideLayers(TorchFunctionMode):
    """Record, per innermost running module, the compute ops called outside conv/linear layers."""

    def __init__(self, stack: list[str], inside: list[int], found: dict[str, set[str]]) -> None:
        super().__init__()
        self.stack, self.inside, self.found = stack, inside, found

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        name = getattr(func, "__name__", "")
        if not self.inside[0] and name in _COMPUTE_OPS:
            self.found.setdefault(self.stack[-1] if self.stack else "", set()).add(name)
        return func(*args, **(kwargs or {}))


@dataclass
class _Call:
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    macs: int


def _record_calls(
    model: nn.Module, example_input: torch.Tensor
) -> tuple[dict[str, list[_Call]], dict[str, str]]:
    """Conv/linear calls of ``model(example_input)`` by module name, and the unmodelled modules that ran."""
    calls: dict[str, list[_Call]] = {}
    unmodelled: dict[str, str] = {}
    hooks = []

    def make_hook(name: str):
        def hook(module: nn.Module, inputs: tuple[Any, ...], output: Any) -> None:
            x = inputs[0]
            batch = int(x.shape[0])
            if isinstance(module, nn.Conv2d):
                oc, oh, ow = (int(v) for v in output.shape[1:])
                kh, kw = module.kernel_size
                macs = oh * ow * oc * (module.in_channels // module.groups) * kh * kw
            else:
                macs = (output.numel() // batch) * module.in_features
            calls.setdefault(name, []).append(
                _Call(tuple(int(v) for v in x.shape[1:]), tuple(int(v) for v in output.shape[1:]), macs)
            )

        return hook

    stack: list[str] = []
    inside = [0]

    def enter(name: str, layer: bool):
        def hook(module: nn.Module, inputs: tuple[Any, ...]) -> None:
            stack.append(name)
            inside[0] += layer

        return hook

    def leave(layer: bool):
        def hook(module: nn.Module, inputs: tuple[Any, ...], output: Any) -> None:
            stack.pop()
            inside[0] -= layer

        return hook

    for name, module in model.named_modules():
        layer = isinstance(module, nn.Conv2d | nn.Linear)
        if layer:
            hooks.append(module.register_forward_hook(make_hook(name)))
        hooks.append(module.register_forward_pre_hook(enter(name, layer)))
        hooks.append(module.register_forward_hook(leave(layer)))
    found: dict[str, set[str]] = {}
    try:
        with torch.no_grad(), _ComputeOutsideLayers(stack, inside, found):
            model(example_input)
    except (RuntimeError, ValueError) as e:
        shape = "x".join(str(d) for d in example_input.shape)
        raise UnsupportedLayerError(
            f"the model does not run on an input of shape {shape} ({type(e).__name__}: {e}); "
            "a larger input (--input, or the dataset's image size) may fit it"
        ) from e
    finally:
        for h in hooks:
            h.remove()
    for name, ops in found.items():
        kind = type(model.get_submodule(name)).__name__
        unmodelled[name or "<model>"] = f"{kind} calls {', '.join(sorted(ops))}"
    return calls, unmodelled


def _record_calls_in_eval(
    model: nn.Module, example_input: torch.Tensor
) -> tuple[dict[str, list[_Call]], dict[str, str]]:
    """:func:`_record_calls` in eval mode, the model's mode restored afterwards."""
    was_training = model.training
    model.eval()
    try:
        return _record_calls(model, example_input)
    finally:
        model.train(was_training)


def _segment_of(idxs: list[int], root_idxs: list[int], channels: int) -> tuple[int, int, int, str]:
    """``(offset, n_channels, mult, problem)`` of a consumer's input indices fed by a group.

    ``problem`` is empty when the consumer reads all ``channels`` of the group as one
    contiguous block, channel ``r`` feeding features ``offset + r*mult .. offset + (r+1)*mult``.
    """
    n_ch = len(set(root_idxs))
    mult = max(1, len(idxs) // max(1, n_ch))
    offset = min(idxs)
    if n_ch != channels:
        return offset, n_ch, mult, "reads only part of the channels (split or slice)"
    expected: dict[int, set[int]] = {}
    for i, r in zip(idxs, root_idxs):
        expected.setdefault(r, set()).add(i)
    regular = len(idxs) == channels * mult and all(
        expected.get(r) == set(range(offset + r * mult, offset + (r + 1) * mult)) for r in range(channels)
    )
    return (
        offset,
        n_ch,
        mult,
        "" if regular else "reads the channels in an irregular order (channel shuffle?)",
    )


def _unmapped_channel_join(node: Any) -> bool:
    """Whether the dependency-graph ``node`` is a concatenation or split that may act on the
    channel dimension but whose channel offsets Torch-Pruning did not infer.

    Torch-Pruning then passes the pruned indices to every input (or output) unchanged, so it
    prunes the same channels of every branch and leaves the consumers' features misaligned
    (measured: ``torch.cat([conv_a(x), conv_b(x)], 1)`` followed by ``flatten`` and
    ``nn.Linear``). A join on another dimension has no offsets and is fine; a negative
    ``dim`` cannot be told apart without the rank, so it counts as a channel join.
    """
    module = node.module
    if not isinstance(module, tp.ops._ConcatOp | tp.ops._SplitOp) or module.offsets is not None:
        return False
    dim = getattr(node.grad_fn, "_saved_dim", None)
    return dim is None or dim == 1 or dim >= 2**63


def _out_dim(module: nn.Module) -> int:
    weight = module.weight
    assert isinstance(weight, torch.Tensor)
    return int(weight.shape[0])


def trace(model: nn.Module, example_input: torch.Tensor) -> GraphInfo:
    """Trace ``model(example_input)``: layers, dependency graph and groups.

    The model's train/eval mode is restored afterwards; its weights are not touched.

    Raises:
        UnsupportedLayerError: the model has no conv/linear layer or cannot be traced.
    """
    was_training = model.training
    model.eval()
    try:
        calls, unmodelled = _record_calls(model, example_input)
        if not calls:
            raise UnsupportedLayerError(
                "the model has no nn.Conv2d or nn.Linear layer that runs in forward()"
            )
        dg: Any = None
        failure = ""
        if unmodelled:
            # Torch-Pruning's grouping can run away on attention reshapes (Swin: >20 GB);
            # such a model is refused for search and pruning anyway.
            failure = "the model computes outside conv/linear layers (GraphInfo.unmodelled)"
        else:
            try:
                with torch.enable_grad():
                    dg = tp.DependencyGraph().build_dependency(
                        model, example_inputs=(example_input,), verbose=False
                    )
            except Exception as e:  # noqa: BLE001 - Torch-Pruning fails on some graphs; pruning is then disabled
                failure = f"Torch-Pruning could not build the dependency graph ({type(e).__name__}: {e})"
    finally:
        model.train(was_training)

    names = list(calls)
    index = {n: i for i, n in enumerate(names)}
    modules = {n: model.get_submodule(n) for n in names}
    module_names = {id(m): n for n, m in modules.items()}
    all_names = {id(m): n for n, m in model.named_modules()}

    group_of: dict[str, int] = {}
    reasons: dict[str, str] = {}
    groups: dict[int, GroupInfo] = {}
    segments: dict[str, list[tuple[int, int, int, int]]] = {n: [] for n in names}  # (offset, group, ch, mult)

    for name in names:
        if name in group_of:
            continue
        root = modules[name]
        if dg is None:
            group_of[name] = NOT_PRUNABLE
            reasons[name] = failure
            continue
        if root not in dg.module2node:
            group_of[name] = NOT_PRUNABLE
            reasons[name] = "its output does not reach the model output"
            continue
        pruner = dg.get_pruner_of_module(root)
        channels = int(pruner.get_out_channels(root))
        group = dg.get_pruning_group(root, pruner.prune_out_channels, list(range(channels)))
        producers: list[str] = []
        norms: list[str] = []
        consumers: list[tuple[str, int, int, int]] = []
        reason = ""
        for item in group:
            dep, idxs = item.dep, [int(i) for i in item.idxs]
            root_idxs = [int(i) for i in item.root_idxs]
            target = dep.target.module
            handler = dep.handler
            identity = idxs == root_idxs and len(idxs) == channels
            tname = module_names.get(id(target))
            if isinstance(target, tp.ops._OutputOp):
                reason = reason or "its output channels are the model output"
            elif _unmapped_channel_join(dep.target):
                reason = reason or (
                    "it meets other channels in a concatenation or split whose channel offsets "
                    "Torch-Pruning cannot infer (e.g. a torch.cat followed by a flatten)"
                )
            elif tname is not None:
                if layer_kind(target) == "grouped":
                    reason = reason or f"coupled with grouped convolution {tname!r}"
                if dg.is_out_channel_pruning_fn(handler) and tname not in producers:
                    if not dep.target.outputs:
                        reason = reason or "its output channels are the model output"
                    if not identity:
                        reason = reason or f"{tname!r} holds the channels under an irregular index mapping"
                    producers.append(tname)
                if dg.is_in_channel_pruning_fn(handler):
                    offset, n_ch, mult, problem = _segment_of(idxs, root_idxs, channels)
                    if problem:
                        reason = reason or f"{tname!r} {problem}"
                    consumers.append((tname, offset, n_ch, mult))
            elif isinstance(target, nn.modules.batchnorm._BatchNorm) and identity:
                norms.append(all_names.get(id(target), ""))
        producers.sort(key=index.__getitem__)
        if any(_out_dim(modules[p]) != channels for p in producers):
            reason = reason or "coupled layers have different channel counts"
        gid = NOT_PRUNABLE if reason else index[producers[0]]
        for p in producers:
            group_of[p] = gid
            if reason:
                reasons[p] = reason
        for cname, offset, n_ch, mult in consumers:
            segments[cname].append((offset, gid, n_ch, mult))
        if not reason:
            groups[gid] = GroupInfo(
                id=gid,
                channels=channels,
                producers=tuple(producers),
                norms=tuple(n for n in norms if n),
                consumers=tuple(sorted((c, o, m) for c, o, _, m in consumers)),
            )

    specs = []
    for i, name in enumerate(names):
        m = modules[name]
        first = calls[name][0]
        kind = layer_kind(m)
        kernel: tuple[int, int] = (1, 1)
        stride: tuple[int, int] = (1, 1)
        padding: tuple[int, int] = (0, 0)
        groups_n = 1
        if isinstance(m, nn.Conv2d):
            in_ch, out_ch = int(m.in_channels), int(m.out_channels)
            kernel = (int(m.kernel_size[0]), int(m.kernel_size[1]))
            stride = (int(m.stride[0]), int(m.stride[1]))
            if isinstance(m.padding, str):
                padding = (kernel[0] // 2, kernel[1] // 2) if m.padding == "same" else (0, 0)
            else:
                padding = (int(m.padding[0]), int(m.padding[1]))
            groups_n = int(m.groups)
        else:
            assert isinstance(m, nn.Linear)
            in_ch, out_ch = int(m.in_features), int(m.out_features)
        specs.append(
            LayerSpec(
                name=name,
                kind=kind,
                in_channels=in_ch,
                out_channels=out_ch,
                kernel=kernel,
                stride=stride,
                padding=padding,
                groups=groups_n,
                in_shape=first.in_shape,
                out_shape=first.out_shape,
                macs=sum(c.macs for c in calls[name]),
                params=sum(p.numel() for p in m.parameters(recurse=False)),
                bias=getattr(m, "bias", None) is not None,
                group=group_of.get(name, NOT_PRUNABLE),
                in_segments=_in_segments(segments[name], in_ch),
                index=i,
            )
        )
    return GraphInfo(
        model=model,
        layers=tuple(specs),
        groups=MappingProxyType(groups),
        unprunable=MappingProxyType(reasons),
        dependency_graph=dg,
        unmodelled=MappingProxyType(unmodelled),
    )


def _in_segments(
    found: list[tuple[int, int, int, int]], in_features: int
) -> tuple[tuple[int, int, int], ...]:
    """Sorted, gap-filled ``(group, channels, mult)`` segments covering ``in_features``."""
    out: list[tuple[int, int, int]] = []
    pos = 0
    for offset, gid, channels, mult in sorted(found):
        if offset < pos:
            continue
        if offset > pos:
            out.append((NOT_PRUNABLE, offset - pos, 1))
        out.append((gid, channels, mult))
        pos = offset + channels * mult
    if pos < in_features:
        out.append((NOT_PRUNABLE, in_features - pos, 1))
    return tuple(out)


def unmodelled_error(unmodelled: Mapping[str, str]) -> UnsupportedLayerError:
    """The one-line refusal for a model with modules automc cannot price (``GraphInfo.unmodelled``)."""
    shown = "; ".join(f"{n}: {w}" for n, w in list(unmodelled.items())[:3])
    more = f" (+{len(unmodelled) - 3} more)" if len(unmodelled) > 3 else ""
    return UnsupportedLayerError(
        f"{len(unmodelled)} module(s) compute outside nn.Conv2d/nn.Linear, which automc "
        f"cannot price or compress: {shown}{more}"
    )


def require_modelled(model: nn.Module, example_input: torch.Tensor) -> None:
    """Refuse, with :func:`unmodelled_error`, a model that computes outside conv/linear layers.

    One forward pass and no dependency graph: cheap enough to run before training a base model.
    """
    _, unmodelled = _record_calls_in_eval(model, example_input)
    if unmodelled:
        raise unmodelled_error(unmodelled)


def layers(model: nn.Module, example_input: torch.Tensor) -> list[LayerSpec]:
    """Every conv/linear layer of ``model`` in execution order (see :func:`trace`).

    Raises:
        UnsupportedLayerError: the model cannot be traced, or modules outside conv/linear
            compute (:attr:`GraphInfo.unmodelled`): costs built on the table would leave
            their work out.
    """
    info = trace(model, example_input)
    if info.unmodelled:
        raise unmodelled_error(info.unmodelled)
    return list(info.layers)


def count_macs(model: nn.Module, example_input: torch.Tensor) -> int:
    """Conv/linear MACs per sample of one forward pass (no dependency graph; mode restored)."""
    calls, _ = _record_calls_in_eval(model, example_input)
    return sum(c.macs for cs in calls.values() for c in cs)
