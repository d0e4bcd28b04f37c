"""Deployment runtimes: exports that run the precisions they claim, outputs that match torch,
timing that imports no torch where the runtime does not need it, and clear errors."""

from __future__ import annotations

import copy
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from automc import compress, graph, models
from automc.errors import AutomcError
from automc.hardware import runtimes
from automc.hardware.runtimes.deploy import INPUT_RANGE, deployable, onnx_layer_nodes
from automc.hardware.runtimes.ort_session import load
from automc.hardware.runtimes.winner import ship
from automc.plan import CompressionPlan, LayerChoice

torch.set_num_threads(1)
CPU = "CPUExecutionProvider"


def _model(name: str = "test_residual", seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    net = models.create(name, num_classes=10, in_channels=3).eval()
    with torch.no_grad():  # non-trivial BatchNorm statistics, so folding matters
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
    return net


def _layers(net: torch.nn.Module) -> list[str]:
    return [s.name for s in graph.layers(net, torch.zeros(1, 3, 16, 16))]


@pytest.fixture(scope="module")
def data() -> dict[str, object]:
    gen = torch.Generator().manual_seed(1)
    return {
        "example": torch.randn(1, 3, 16, 16, generator=gen),
        "calib": [torch.randn(16, 3, 16, 16, generator=gen) for _ in range(4)],
        "test": torch.randn(64, 3, 16, 16, generator=gen),
    }


@pytest.fixture(scope="module")
def ort() -> runtimes.Runtime:
    return runtimes.get("onnxruntime")


def _ops(path: Path) -> Counter[str]:
    return Counter(n.op_type for n in onnx.load(str(path)).graph.node)


def test_registry_lists_the_runtimes_and_importing_it_imports_no_torch():
    code = (
        "import sys; from automc.hardware import runtimes; "
        "assert runtimes.REGISTRY.names() == ['onnxruntime', 'openvino', 'torch'], runtimes.REGISTRY.names(); "
        "assert 'torch' not in sys.modules and 'onnxruntime' not in sys.modules, 'imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_runtimes_record_what_a_profile_needs(ort):
    assert ort.precisions == {"fp32", "int8"} and ort.provider == CPU
    assert ort.graph_optimization == "ORT_ENABLE_ALL" and ort.version[0].isdigit()
    eager = runtimes.get("torch")
    assert eager.precisions == {"fp32"} and eager.provider == "eager" and eager.version == torch.__version__
    assert isinstance(ort, runtimes.Runtime) and isinstance(eager, runtimes.Runtime)


def test_sessions_run_without_spinning_workers(ort):
    from automc.hardware.runtimes.ort_session import SPINNING, session_options

    opts = session_options(threads=2)
    assert opts.get_session_config_entry(SPINNING) == "0" and opts.intra_op_num_threads == 2


def test_int8_export_runs_integer_kernels_after_graph_optimisation(ort, data, tmp_path):
    net = _model()
    names = _layers(net)
    path = ort.export(net, data["example"], tmp_path / "int8.onnx", int8_layers=names, calib=data["calib"])
    optimised = tmp_path / "optimised.onnx"
    load(path, threads=1, provider=CPU, optimized_path=optimised)
    ops = _ops(optimised)
    convs = sum(1 for n in names if n != "fc")
    assert ops["QLinearConv"] == convs, ops
    assert ops["Conv"] == 0 and ops["FusedConv"] == 0, ops  # no float conv is left
    assert ops["QGemm"] + ops["QLinearMatMul"] == 1, ops


class ChannelsLastMLP(torch.nn.Module):
    """A ConvNeXt-style block: its linear layers act on a 4-d channels-last tensor, which
    ``torch.onnx.export`` writes as ``MatMul`` with a renamed, transposed weight."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = torch.nn.Conv2d(3, 8, 4, stride=4)
        self.pw1, self.pw2 = torch.nn.Linear(8, 16), torch.nn.Linear(16, 8)
        self.fc = torch.nn.Linear(8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        y = self.pw2(torch.relu(self.pw1(x.permute(0, 2, 3, 1))))
        return self.fc((x + y.permute(0, 3, 1, 2)).mean((2, 3)))


def test_channels_last_linear_layers_are_found_and_run_int8(ort, data, tmp_path):
    torch.manual_seed(0)
    net = ChannelsLastMLP().eval()
    names = _layers(net)
    fp32 = ort.export(net, data["example"], tmp_path / "fp32.onnx")
    nodes = onnx_layer_nodes(onnx.load(str(fp32)).graph, names)
    assert all(len(nodes[n]) == 1 for n in names), nodes
    path = ort.export(net, data["example"], tmp_path / "int8.onnx", int8_layers=names, calib=data["calib"])
    optimised = tmp_path / "optimised.onnx"
    load(path, threads=1, provider=CPU, optimized_path=optimised)
    ops = _ops(optimised)
    assert ops["QLinearConv"] == 1 and ops["MatMul"] == 0 and ops["Conv"] == 0, ops
    x = data["test"]
    ref = net(x).detach().numpy()
    out8 = ort.session(path, threads=1)(x.numpy())
    assert np.abs(out8 - ref).max() < 0.1 * np.abs(ref).max()


@pytest.mark.parametrize("saturates", [True, False])
def test_int8_weights_are_7_bit_where_the_cpu_kernels_saturate(ort, data, tmp_path, monkeypatch, saturates):
    from onnx import numpy_helper

    from automc.hardware.runtimes import ort as ort_module

    monkeypatch.setattr(ort_module, "int8_saturates", lambda: saturates)
    net = _model()
    path = ort.export(
        net, data["example"], tmp_path / "int8.onnx", int8_layers=_layers(net), calib=data["calib"]
    )
    model = onnx.load(str(path))
    weights = {
        n.input[0] for n in model.graph.node if n.op_type == "DequantizeLinear" and "weight" in n.input[0]
    }
    peak = max(
        int(np.abs(numpy_helper.to_array(i).astype(np.int32)).max())
        for i in model.graph.initializer
        if i.name in weights
    )
    assert weights and peak == (64 if saturates else 127)
    assert not ort_module.OnnxRuntime(device="cuda").reduce_range  # no vpmaddubsw on a GPU


def test_int8_saturates_follows_the_cpus_vnni_flags(monkeypatch):
    from automc.hardware import cpu
    from automc.hardware.runtimes import ort as ort_module

    def machine(features, flags):
        monkeypatch.setattr(cpu, "x86_features", lambda: features)
        monkeypatch.setattr(cpu, "cpuinfo_flags", lambda: flags)
        monkeypatch.setattr(ort_module, "x86_features", lambda: features)

    machine({"AVX2": True, "AVX512VNNI": False}, ["fpu", "avx2"])
    assert ort_module.int8_saturates() and cpu.isa() == ("avx2",)
    machine({"AVX2": True}, ["fpu", "avx2", "avx_vnni"])
    assert not ort_module.int8_saturates() and cpu.isa() == ("avx2", "vnni")
    machine({"AVX2": True, "AVX512F": True, "AVX512VNNI": True}, None)
    assert not ort_module.int8_saturates() and cpu.isa() == ("avx2", "avx512f", "vnni")
    machine({"AVX2": True}, None)
    assert ort_module.int8_saturates()  # no cpuinfo to prove VNNI: 7-bit weights are the safe side
    machine(None, ["fp", "asimd", "asimddp"])
    assert not ort_module.int8_saturates()  # ARM and others: no vpmaddubsw


def test_fp32_and_int8_artifacts_compute_what_the_torch_model_computes(ort, data, tmp_path):
    net = _model()
    x = data["test"]
    ref = net(x).detach().numpy()
    fp32 = ort.export(net, data["example"], tmp_path / "fp32.onnx")
    int8 = ort.export(
        net, data["example"], tmp_path / "int8.onnx", int8_layers=_layers(net), calib=data["calib"]
    )
    out32 = ort.session(fp32, threads=1)(x.numpy())
    out8 = ort.session(int8, threads=1)(x.numpy())
    assert out32.shape == ref.shape == out8.shape
    np.testing.assert_allclose(out32, ref, atol=1e-4, rtol=1e-4)
    scale = float(np.abs(ref).max())
    assert np.abs(out8 - ref).max() < 0.1 * scale
    assert np.abs(out8 - ref).max() > 1e-6  # int8 really rounds
    assert (out8.argmax(1) == ref.argmax(1)).mean() >= 0.9


def test_a_batch_of_any_size_runs_through_one_artifact(ort, data, tmp_path):
    net = _model()
    path = ort.export(net, data["example"], tmp_path / "m.onnx")
    fn = ort.session(path, threads=1)
    assert fn(data["test"][:1].numpy()).shape == (1, 10) and fn(data["test"].numpy()).shape == (64, 10)


def test_mixed_export_quantizes_only_the_named_layers(ort, data, tmp_path):
    net = _model()
    names = _layers(net)
    int8 = {"conv1", "down_conv"}
    path = ort.export(net, data["example"], tmp_path / "mixed.onnx", int8_layers=int8, calib=data["calib"])
    g = onnx.load(str(path)).graph
    inits = {i.name for i in g.initializer}
    producer = {o: n.op_type for n in g.node for o in n.output}
    nodes = onnx_layer_nodes(
        onnx.load(str(ort.export(net, data["example"], tmp_path / "f.onnx"))).graph, names
    )
    by_name = {n.name: n for n in g.node}
    for layer in names:
        [node_name] = nodes[layer]
        weight = by_name[node_name].input[1]
        if layer in int8:
            assert producer.get(weight) == "DequantizeLinear", layer
        else:
            assert weight in inits, layer  # a float initialiser: the layer stays fp32


def test_a_mixed_export_runs_exactly_its_int8_layers_as_integer_kernels(ort, data, tmp_path):
    """The float layers stay float after ONNX Runtime's optimisation: no quantize/dequantize
    pair is left around them for the optimiser to fold them into per-tensor ``QLinearConv``s."""
    net = _model()
    convs = [n for n in _layers(net) if n != "fc"]
    int8 = set(convs[::2])
    path = ort.export(net, data["example"], tmp_path / "mixed.onnx", int8_layers=int8, calib=data["calib"])
    optimised = tmp_path / "optimised.onnx"
    load(path, threads=1, provider=CPU, optimized_path=optimised)
    ops = _ops(optimised)
    assert ops["QLinearConv"] == len(int8), ops
    assert ops["Conv"] + ops["FusedConv"] == len(convs) - len(int8), ops
    x = data["test"]
    ref = net(x).detach().numpy()
    assert (ort.session(path, threads=1)(x.numpy()).argmax(1) == ref.argmax(1)).mean() >= 0.9


def test_layer_names_map_to_onnx_nodes_on_resnet20_and_mobilenetv2(ort, tmp_path):
    for name in ("resnet20", "mobilenetv2"):
        net = models.create(name, num_classes=10, in_channels=3).eval()
        x = torch.zeros(1, 3, 32, 32)
        names = [s.name for s in graph.layers(net, x)]
        g = onnx.load(str(ort.export(net, x, tmp_path / f"{name}.onnx"))).graph
        found = onnx_layer_nodes(g, names)
        assert all(len(v) == 1 for v in found.values()), name
        assert len({n for v in found.values() for n in v}) == len(names)


def test_low_rank_layer_maps_to_its_factors_and_unknown_layer_is_an_error(ort, data, tmp_path):
    net = _model()
    plan = CompressionPlan(model="test_residual", layers={"conv2": LayerChoice(rank=2)})
    small = compress.apply(net, plan, data["example"])
    g = onnx.load(str(ort.export(small, data["example"], tmp_path / "lr.onnx"))).graph
    assert len(onnx_layer_nodes(g, ["conv2"])["conv2"]) == 2
    with pytest.raises(AutomcError, match="nope"):
        onnx_layer_nodes(g, ["nope"])


def test_a_compressed_model_deploys_the_weights_it_computes_with(ort, data, tmp_path):
    """4-bit weights (float activations), sparsity and pruning: the fp32 artifact computes what
    the fake-quantized, masked torch model computes."""
    net = _model()
    plan = CompressionPlan(
        model="test_residual",
        layers={
            "conv1": LayerChoice(w_bits=4),
            "down_conv": LayerChoice(sparsity=0.5),
            "fc": LayerChoice(w_bits=6),
        },
    )
    small = compress.apply(net, plan, data["example"]).eval()
    x = data["test"]
    ref = small(x).detach().numpy()
    plain = deployable(small)
    assert not any(isinstance(m, compress.quant.QuantMixin) for m in plain.modules())
    path, int8 = ship(ort, small, plan, data["example"], tmp_path / "c.onnx", calib=data["calib"])
    assert int8 == ()  # activations at 32 bits: no int8 kernel
    np.testing.assert_allclose(ort.session(path, threads=1)(x.numpy()), ref, atol=1e-4, rtol=1e-4)


def test_ship_exports_the_plans_int8_layers(ort, data, tmp_path):
    net = _model()
    plan = CompressionPlan(
        model="test_residual",
        layers={"conv1": LayerChoice(w_bits=8, a_bits=8), "conv2": LayerChoice(w_bits=4, a_bits=8)},
    )
    assert runtimes.int8_layers(plan) == {"conv1", "conv2"}
    small = compress.apply(net, plan, data["example"], calib_batches=data["calib"]).eval()
    path, int8 = ship(ort, small, plan, data["example"], tmp_path / "q.onnx", calib=data["calib"])
    assert int8 == ("conv1", "conv2")
    optimised = tmp_path / "opt.onnx"
    load(path, threads=1, provider=CPU, optimized_path=optimised)
    assert _ops(optimised)["QLinearConv"] >= 2
    x = data["test"]
    ref = small(x).detach().numpy()
    out = ort.session(path, threads=1)(x.numpy())
    assert (out.argmax(1) == ref.argmax(1)).mean() >= 0.9


def test_torch_runtime_round_trips_and_refuses_int8(data, tmp_path):
    eager = runtimes.get("torch")
    net = _model()
    path = eager.export(net, data["example"], tmp_path / "m.pt2")
    before = torch.get_num_threads()
    out = eager.session(path, threads=1)(data["test"].numpy())
    torch.set_num_threads(before)
    np.testing.assert_allclose(out, net(data["test"]).detach().numpy(), atol=1e-4, rtol=1e-4)
    with pytest.raises(AutomcError, match="fp32 only"):
        eager.export(net, data["example"], tmp_path / "q.pt2", int8_layers={"conv1"}, calib=data["calib"])


def test_int8_without_calibration_batches_is_an_error(ort, data, tmp_path):
    with pytest.raises(AutomcError, match="calibration"):
        ort.export(_model(), data["example"], tmp_path / "q.onnx", int8_layers={"conv1"})


def test_timing_an_onnx_artifact_imports_no_torch(ort, data, tmp_path):
    path = ort.export(_model(), data["example"], tmp_path / "m.onnx")
    np.save(tmp_path / "x.npy", data["example"].numpy())
    code = (
        "import sys, numpy as np; from pathlib import Path; "
        "from automc.hardware import runtimes; from automc.hardware.timing import measure_artifacts_ms; "
        f"rt = runtimes.get('onnxruntime'); x = np.load({str(tmp_path / 'x.npy')!r}); "
        f"ms = measure_artifacts_ms(rt, [Path({str(path)!r})] * 2, x, threads=1, warmup=2, repeats=3); "
        f"acc = runtimes.accuracy(rt.session(Path({str(path)!r}), threads=1), [(x, np.zeros(1, dtype=int))]); "
        "assert len(ms) == 2 and all(m > 0 for m in ms), ms; "
        "assert 'torch' not in sys.modules, 'torch was imported'; print('ok')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


def test_a_runtime_that_is_not_installed_is_one_clear_error():
    code = (
        "import sys; sys.modules['onnxruntime'] = None\n"
        "from automc.errors import AutomcError\nfrom automc.hardware import runtimes\n"
        "try:\n    runtimes.get('onnxruntime')\nexcept AutomcError as e:\n    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "runtime 'onnxruntime' on cpu is not installed" in out.stdout and "pip install" in out.stdout
    with pytest.raises(AutomcError, match="unknown runtime 'tvm'"):
        runtimes.get("tvm")
    with pytest.raises(AutomcError, match="unknown device"):
        runtimes.get("onnxruntime", device="npu")


@pytest.mark.skipif(
    "CUDAExecutionProvider" in __import__("onnxruntime").get_available_providers(),
    reason="this machine has the CUDA execution provider",
)
def test_a_missing_execution_provider_is_one_clear_error():
    with pytest.raises(AutomcError, match="not installed"):
        runtimes.get("onnxruntime", device="cuda")


def test_openvino_runs_the_int8_artifact_with_integer_kernels(data, tmp_path):
    pytest.importorskip("openvino")
    ov_rt = runtimes.get("openvino")
    assert ov_rt.precisions == {"fp32", "int8"} and ov_rt.provider == "CPU"
    net = _model()
    x = data["test"]
    ref = net(x).detach().numpy()
    fp32 = ov_rt.export(net, data["example"], tmp_path / "fp32.onnx")
    int8 = ov_rt.export(
        net, data["example"], tmp_path / "int8.onnx", int8_layers=_layers(net), calib=data["calib"]
    )
    np.testing.assert_allclose(ov_rt.session(fp32, threads=1)(x.numpy()), ref, atol=1e-3, rtol=1e-3)
    out8 = ov_rt.session(int8, threads=1)(x.numpy())
    assert (out8.argmax(1) == ref.argmax(1)).mean() >= 0.9

    import openvino as ov

    core = ov.Core()
    compiled = core.compile_model(core.read_model(str(int8)), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    precisions = {
        op.get_rt_info()["runtimePrecision"].astype(str)
        for op in compiled.get_runtime_model().get_ops()
        if op.get_rt_info()["layerType"].astype(str) == "Convolution"
    }
    assert precisions == {"u8"}, precisions


def test_a_clamped_activation_range_ships_with_the_layer(ort, data, tmp_path):
    """A fine-tuned network computes with its 8-bit inputs clamped to the calibrated range; the
    deployable network, its fp32 artifact and its int8 artifact clamp there too (without the
    clamp the network is another function: demo winners lost half their accuracy)."""
    net = _model()
    layers = {"conv2": LayerChoice(w_bits=8, a_bits=8), "down_conv": LayerChoice(w_bits=4, a_bits=8)}
    plan = CompressionPlan(model="test_residual", layers=layers)
    small = compress.apply(net, plan, data["example"], calib_batches=data["calib"]).eval()
    for name in layers:  # a narrow range, as fine-tuning with a frozen grid leaves it
        small.get_submodule(name).set_act_range(0.0, 0.25)
    x = data["test"]
    ref = small(x).detach().numpy()
    scale = float(np.abs(ref).max())
    unclamped = copy.deepcopy(small)
    for name in layers:
        unclamped.get_submodule(name).a_bits = 32
    assert np.abs(unclamped(x).detach().numpy() - ref).max() > 0.2 * scale  # the clamp matters
    plain = deployable(small)
    assert not any(isinstance(m, compress.quant.QuantMixin) for m in plain.modules())
    ranges = {n: getattr(m, INPUT_RANGE) for n, m in plain.named_modules() if hasattr(m, INPUT_RANGE)}
    assert ranges == {n: (0.0, pytest.approx(0.25)) for n in layers}
    assert np.abs(plain(x).detach().numpy() - ref).max() < 0.02 * scale
    fp32, _ = ship(
        ort, small, CompressionPlan(model="test_residual"), data["example"], tmp_path / "f.onnx", calib=()
    )
    assert _ops(fp32)["Clip"] == len(layers)
    np.testing.assert_allclose(ort.session(fp32, threads=1)(x.numpy()), plain(x).detach().numpy(), atol=1e-4)
    int8, names = ship(ort, small, plan, data["example"], tmp_path / "q.onnx", calib=data["calib"])
    assert names == ("conv2", "down_conv")
    out8 = ort.session(int8, threads=1)(x.numpy())
    assert np.abs(out8 - ref).max() < 0.05 * scale
    assert (out8.argmax(1) == ref.argmax(1)).mean() >= 0.95
