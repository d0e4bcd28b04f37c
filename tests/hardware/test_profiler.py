"""Building a device profile on tiny models: table configs, variants, overhead fit, a whole profile, the CLI."""

from __future__ import annotations

import random
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch

from automc import compress, graph, models
from automc.cli import main
from automc.cost.latency import layer_stages, predict_latency
from automc.errors import AutomcError
from automc.hardware import (
    ProfileCase,
    ProfileSettings,
    Variant,
    build_profile,
    fit_network,
    fit_overhead,
    plan_macs,
    random_plan,
    recheck,
    refit_loo_ms,
    table_configs,
    table_only,
)
from automc.hardware import build as hw_build
from automc.hardware.build import _to_fastest_phase
from automc.hardware.fitting import FitRow, fit_network_mixed
from automc.plan import CompressionPlan, LayerChoice, layers_fingerprint
from automc.schema.hw_profile import HwProfile, dump_hw_profile, load_hw_profile

torch.set_num_threads(1)


def tiny_case(name: str = "test_tiny", hw: int = 8) -> ProfileCase:
    torch.manual_seed(0)
    model = models.create(name).eval()
    x = torch.randn(1, 3, hw, hw)
    return ProfileCase(name=name, model=model, example_input=x, layers=tuple(graph.layers(model, x)))


def test_table_configs_cover_grid_and_low_rank_factors() -> None:
    case = tiny_case()
    fr = (0.5, 1.0)
    keys = set(table_configs([case.layers], channel_fractions=fr, rank_fractions=fr))
    for spec in case.layers:
        plain, factors = layer_stages(spec, fr, fr)
        for st in [plain, *(factors or ())]:
            for n, m in st.grid_points():
                assert st.key(n, m, 32, 1) in keys
    no_lr = set(table_configs([case.layers], channel_fractions=fr, rank_fractions=fr, lowrank=False))
    assert no_lr < keys
    assert any(k[5] == 1 and k[0] == "conv2d" for k in keys - no_lr)  # a 1x1 second factor


def test_fit_overhead_recovers_known_terms() -> None:
    rng = random.Random(0)
    rows = []
    for _ in range(12):
        table, layers, elems = rng.uniform(1, 5), rng.randint(5, 40), rng.uniform(1e4, 1e6)
        rows.append((table, layers, elems, 0.8 * table + 0.2 + 0.01 * layers + 2e-7 * elems))
    scale, c0, c_layer, c_elem = fit_overhead(rows)
    assert scale == pytest.approx(0.8, rel=1e-6)
    assert c0 == pytest.approx(0.2, rel=1e-6)
    assert c_layer == pytest.approx(0.01, rel=1e-6)
    assert c_elem == pytest.approx(2e-7, rel=1e-6)
    # a term that would come out negative is dropped, never negative
    neg = [(t, n, e, t + 0.5 - 1e-7 * e) for t, n, e, _ in rows]
    assert min(fit_overhead(neg)) >= 0
    # measurements unrelated to the table: the scale is dropped (kept at 1), never negative
    flat = [(t, n, e, 3.0 - 0.3 * t) for t, n, e, _ in rows]
    assert fit_overhead(flat)[0] == 1.0


def test_random_plan_is_valid_for_the_model() -> None:
    case = tiny_case("test_residual")
    rng = random.Random(3)
    for _ in range(5):
        plan = random_plan(case.layers, rng, model=case.name)
        plan.validate_for(case.layers)
        out = compress.apply(case.model, plan, case.example_input)
        assert out(case.example_input).shape == case.model(case.example_input).shape


def test_level_jitter_spreads_plans_across_compression_levels() -> None:
    """Plans around a network-wide level span a wider MACs range than independent draws."""
    model = models.create("resnet20").eval()
    layers = graph.layers(model, torch.randn(1, 3, 32, 32))
    full = plan_macs(layers, CompressionPlan())

    def macs_span(**kwargs: Any) -> float:
        rng = random.Random(5)
        fractions = [plan_macs(layers, random_plan(layers, rng, **kwargs)) / full for _ in range(30)]
        return max(fractions) - min(fractions)

    for seed in range(3):
        plan = random_plan(layers, random.Random(seed), level_jitter=0.2, rank_probability=0.0)
        keeps = {c.keep_ratio for c in plan.layers.values()}
        assert keeps and all(0.25 <= k <= 1.0 for k in keeps)
        assert max(keeps) / min(keeps) <= 1.2 / 0.8 + 1e-2
    assert macs_span(level_jitter=0.2) > 1.5 * macs_span()


def tiny_profile(case: ProfileCase, fractions: tuple[float, ...] = (0.5, 1.0), **kwargs: Any) -> HwProfile:
    """A quick 1-thread profile of ``case`` (few repeats); ``kwargs`` override its :class:`ProfileSettings`."""
    opts: dict[str, Any] = dict(threads=1, warmup=1, repeats=3, train_variants=2, validate=2) | kwargs
    settings = ProfileSettings(
        profile_id="tiny", channel_fractions=fractions, rank_fractions=fractions, **opts
    )
    return build_profile([case], lambda m, p, x: compress.apply(m, p, x), settings)


def test_build_profile_end_to_end(tmp_path: Path) -> None:
    case = tiny_case()
    prof = tiny_profile(case)
    assert prof.device.id == "tiny" and prof.runtime.threads == 1
    assert prof.validation is not None and prof.validation.n == 2
    assert prof.validation.models == ("test_tiny",)
    lt = prof.latency
    assert lt.network_overhead_ms >= 0 and lt.layer_overhead_ms >= 0 and lt.elementwise_ns_per_element >= 0
    assert lt.table_scale > 0
    path = dump_hw_profile(prof, tmp_path / "tiny.yaml")
    back = load_hw_profile(path)
    assert back.to_dict() == prof.to_dict()
    base = predict_latency(case.layers, CompressionPlan(), back)
    assert not base.flags and not base.unsupported
    pruned = predict_latency(case.layers, CompressionPlan.uniform(case.layers, keep_ratio=0.5), back)
    assert not pruned.flags
    # the pruned conv2 (4 -> 8 channels) is priced from its own table entry, not the full layer's
    assert back.measurement.statistic == "min"
    assert all(e.min_ms is not None and e.min_ms <= e.median_ms for e in back.latency.entries)
    table = {e.key: e.value_ms("min") for e in back.latency.entries}
    conv2 = next(s for s in case.layers if s.name == "conv2")
    plain, _ = layer_stages(conv2, (0.5, 1.0), (0.5, 1.0))
    fit = back.latency.network(layers_fingerprint(case.layers))
    assert fit is not None and fit.model == "test_tiny"
    assert pruned.per_layer_ms["conv2"] == pytest.approx(
        fit.table_scale * table[plain.key(4, 8, 32, 1)], rel=1e-6
    )
    assert pruned.total_ms == pytest.approx(
        fit.network_overhead_ms + sum(pruned.per_layer_ms.values()), rel=1e-9
    )
    # a network the profile was not measured on falls back to the global fit, flagged
    other = tiny_case("test_residual")
    est = predict_latency(other.layers, CompressionPlan(), back)
    assert est.flags.get("(network)", "").startswith("latency: network not in the profile")


def test_build_profile_pins_its_threads_and_restores_the_callers_count() -> None:
    before = torch.get_num_threads()
    prof = tiny_profile(tiny_case(), (1.0,), threads=before + 1, train_variants=1, validate=0)
    assert prof.runtime.threads == before + 1
    assert torch.get_num_threads() == before


def test_fit_network_recovers_scale_overhead_and_stage_cost() -> None:
    rows = [(t, f, 1.7 * t + 0.4 + 0.03 * f) for t, f in ((1.0, 0), (1.5, 4), (2.2, 1), (3.0, 9), (2.6, 6))]
    scale, overhead, stage = fit_network(rows)
    assert scale == pytest.approx(1.7) and overhead == pytest.approx(0.4) and stage == pytest.approx(0.03)
    # no factorised layer in any variant: the stage term cannot be told apart and stays 0
    scale, overhead, stage = fit_network([(t, 0, 1.7 * t + 0.4) for t in (1.0, 1.5, 2.2, 3.0)])
    assert scale == pytest.approx(1.7) and overhead == pytest.approx(0.4) and stage == 0.0
    # a negative intercept is not physical: fall back to a pure scale through the origin
    scale, overhead, stage = fit_network([(1.0, 0, 0.5), (2.0, 0, 1.6)])
    assert overhead == 0.0 and stage == 0.0 and 0.5 < scale < 0.8


def test_fit_network_mixed_recovers_the_transition_cost() -> None:
    """Rows built from known scales, overhead, stage and per-element boundary cost are fitted
    back exactly; without a spread in the boundary elements the transition cost stays 0."""
    rng = random.Random(0)
    rows = []
    for _ in range(10):
        f, q, k, b = rng.uniform(0.2, 1.0), rng.uniform(0.0, 0.8), rng.randint(0, 6), rng.randint(0, 120_000)
        rows.append((f, q, k, b, 0.45 * f + 0.2 * q + 0.15 + 0.02 * k + 0.9e-6 * b))
    fitted = fit_network_mixed(rows)
    assert fitted[:5] == pytest.approx((0.45, 0.2, 0.15, 0.02, 0.9))
    assert fitted.generic_table_scale is None and fitted.int8_generic_table_scale is None
    flat = [(f, q, k, 40_000, m - 0.9e-6 * b + 0.036) for f, q, k, b, m in rows]
    t = fit_network_mixed(flat)
    assert t.transition_ns_per_element == 0.0 and t.network_overhead_ms == pytest.approx(0.15 + 0.036)
    assert (t.table_scale, t.int8_table_scale, t.extra_stage_ms) == pytest.approx((0.45, 0.2, 0.02))


def test_fit_network_mixed_recovers_the_int8_add_cost() -> None:
    """Rows with int8 residual adds on some networks get their per-element cost fitted back;
    with no network adding in int8 the cost stays 0 (it is not told apart)."""
    rng = random.Random(3)
    rows = []
    for _ in range(12):
        f, q, b = rng.uniform(0.2, 1.0), rng.uniform(0.0, 0.8), rng.randint(0, 120_000)
        a = rng.choice((0, 0, rng.randint(1_000, 80_000)))
        rows.append(
            FitRow(f, q, 0, b, 0.45 * f + 0.3 * q + 0.1 + 0.9e-6 * b + 6.5e-6 * a, int8_add_elements=a)
        )
    t = fit_network_mixed(rows)
    assert t.int8_add_ns_per_element == pytest.approx(6.5)
    assert (t.table_scale, t.int8_table_scale, t.transition_ns_per_element) == pytest.approx((0.45, 0.3, 0.9))
    none_added = [
        r._replace(int8_add_elements=0.0, measured_ms=r.measured_ms - 6.5e-6 * r.int8_add_elements)
        for r in rows
    ]
    assert fit_network_mixed(none_added).int8_add_ns_per_element == 0.0


def test_fit_network_mixed_keeps_a_negative_stage_cost() -> None:
    """Each table entry carries a session call's overhead that a factorised layer's second call
    inside a network does not pay: the fitted stage cost may be negative, the scales may not."""
    rng = random.Random(2)
    rows = []
    for _ in range(10):
        f, q, k = rng.uniform(0.2, 1.0), rng.uniform(0.0, 0.8), rng.randint(0, 12)
        rows.append(FitRow(f, q, k, 0, 0.5 * f + 0.3 * q + 0.1 - 0.004 * k))
    t = fit_network_mixed(rows)
    assert t.extra_stage_ms == pytest.approx(-0.004)
    assert (t.table_scale, t.int8_table_scale, t.network_overhead_ms) == pytest.approx((0.5, 0.3, 0.1))


def test_fit_network_mixed_keeps_a_negative_constant() -> None:
    """A table whose entries each carry a session call's overhead overprices a network of N
    layers by N calls: the fitted constant takes that back (negative) and the scale stays the
    kernels', so a thin variant is priced as low against the base as it runs."""
    rng = random.Random(4)
    calls, call_ms, scale = 20, 0.03, 0.8
    rows = []
    for _ in range(10):
        kernels, k = rng.uniform(0.05, 0.6), rng.randint(0, 4)
        table = kernels + (calls + k) * call_ms
        rows.append(FitRow(table, 0.0, k, 0, scale * kernels + 0.05 + 0.002 * k))
    t = fit_network_mixed(rows)
    assert t.table_scale == pytest.approx(scale)
    assert t.network_overhead_ms == pytest.approx(0.05 - scale * calls * call_ms)
    assert t.extra_stage_ms == pytest.approx(0.002 - scale * call_ms)


def test_fit_network_mixed_tells_the_off_layout_stages_apart() -> None:
    """Float and int8 stages off the runtime's blocked layout get their own scales when their
    shares vary; a share that never varies is priced at the table scale of its precision."""
    rng = random.Random(1)
    rows = []
    for _ in range(12):
        f, g, q, qg = (
            rng.uniform(0.1, 0.8),
            rng.uniform(0.0, 0.6),
            rng.uniform(0.0, 0.4),
            rng.uniform(0.0, 0.3),
        )
        rows.append(FitRow(f, q, 0, 0, 0.5 * f + 1.3 * g + 0.3 * q + 0.45 * qg + 0.1, g, qg))
    t = fit_network_mixed(rows)
    assert (t.table_scale, t.generic_table_scale, t.int8_table_scale, t.int8_generic_table_scale) == (
        pytest.approx((0.5, 1.3, 0.3, 0.45))
    )
    assert t.network_overhead_ms == pytest.approx(0.1)
    same = [r._replace(generic_ms=0.0, float_ms=r.float_ms + r.generic_ms) for r in rows]
    assert fit_network_mixed(same).generic_table_scale is None
    # int8 stages off the layout priced like those on it: their part goes to the int8 scale
    flat = [
        r._replace(measured_ms=r.measured_ms + 0.3 * r.int8_generic_ms - 0.45 * r.int8_generic_ms)
        for r in rows
    ]
    t = fit_network_mixed(flat)
    assert t.int8_generic_table_scale is None or t.int8_generic_table_scale == pytest.approx(0.3)
    assert t.int8_table_scale == pytest.approx(0.3)


def test_network_fit_prices_each_factorised_layers_second_call() -> None:
    """A profiled network's prediction grows by ``extra_stage_ms`` per factorised layer, no more."""
    case = tiny_case()
    prof = tiny_profile(case, validate=0)
    fp = layers_fingerprint(case.layers)
    fit = prof.latency.network(fp)
    assert fit is not None
    conv2 = next(s for s in case.layers if s.name == "conv2")
    plan = CompressionPlan(layers={"conv2": LayerChoice(rank=2)}, fingerprint=fp)
    with_stage = replace(
        prof,
        latency=replace(prof.latency, networks=(replace(fit, extra_stage_ms=fit.extra_stage_ms + 0.25),)),
    )
    before = predict_latency(case.layers, plan, prof)
    after = predict_latency(case.layers, plan, with_stage)
    assert after.total_ms - before.total_ms == pytest.approx(0.25)
    assert after.per_layer_ms[conv2.name] - before.per_layer_ms[conv2.name] == pytest.approx(0.25)
    unfactorised = CompressionPlan.uniform(case.layers, keep_ratio=0.5)
    assert predict_latency(case.layers, unfactorised, with_stage).total_ms == pytest.approx(
        predict_latency(case.layers, unfactorised, prof).total_ms
    )


def test_refit_loo_predicts_each_variant_from_the_others() -> None:
    """Timings that follow the network model exactly are predicted exactly; an outlier is not fitted to itself."""
    case = tiny_case()
    prof = tiny_profile(case, validate=0)
    bare = table_only(prof)
    rng = random.Random(3)
    plans = [CompressionPlan()] + [
        random_plan(case.layers, rng, rank_probability=rng.uniform(0, 1)) for _ in range(7)
    ]
    variants = []
    for plan in plans:
        table = predict_latency(case.layers, plan, bare).total_ms
        factorised = sum(1 for c in plan.layers.values() if c.rank is not None)
        measured = 1.7 * table + 0.4 + 0.03 * factorised
        variants.append(
            Variant(model=case.name, plan=plan, macs=plan_macs(case.layers, plan), measured_ms=measured)
        )
    assert refit_loo_ms(case.layers, variants, prof) == pytest.approx([v.measured_ms for v in variants])
    outlier = replace(variants[3], measured_ms=variants[3].measured_ms * 2.0)
    loo = refit_loo_ms(case.layers, variants[:3] + [outlier] + variants[4:], prof)
    assert loo[3] == pytest.approx(variants[3].measured_ms)
    with pytest.raises(AutomcError, match="at least 3"):
        refit_loo_ms(case.layers, variants[:2], prof)


def test_cli_profile_writes_a_valid_profile(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli.yaml"
    rc = main(
        [
            "profile",
            "--model",
            "test_tiny",
            "--input",
            "1x3x8x8",
            "--threads",
            "1",
            "--validate",
            "2",
            "--fit-variants",
            "1",
            "--repeats",
            "3",
            "--warmup",
            "1",
            "--fractions",
            "0.5,1",
            "--statistic",
            "median",
            "--out",
            str(out),
            "--quiet",
        ]
    )
    assert rc == 0
    prof = load_hw_profile(out)
    assert prof.device.id == "cli"
    assert prof.measurement.statistic == "median" and prof.measurement.repeats == 3
    assert prof.latency.grid["channel_fractions"] == (0.5, 1.0)
    assert prof.validation is not None and prof.validation.n == 2
    assert "wrote" in capsys.readouterr().out


def run_cli(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as e:  # argparse errors exit directly
        return int(e.code or 0)


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--model", "test_tiny", "--input", "1x3"], "--input"),
        (["--model", "test_tiny", "--threads", "0"], "--threads"),
        (["--model", "no_such_model", "--validate", "0"], "no_such_model"),
        (["--model", "test_tiny", "--fractions", "0.5,2"], "fractions"),
        (["--model", "test_tiny", "--device", "tpu"], "--device"),
        (["--model", "test_tiny", "--statistic", "mean"], "--statistic"),
    ],
)
def test_cli_bad_input_exits_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], needle: str
) -> None:
    rc = run_cli(["profile", *argv, "--out", str(tmp_path / "x.yaml"), "--quiet"])
    assert rc == 2
    err = capsys.readouterr().err.strip()
    assert needle in err
    assert len(err.splitlines()) == 1
    assert not (tmp_path / "x.yaml").exists()


def test_profile_statistic_decides_which_sample_statistic_is_priced() -> None:
    case = tiny_case()
    prof = tiny_profile(case, (1.0,), repeats=5, train_variants=1, validate=0, statistic="median")
    assert prof.measurement.statistic == "median"
    conv1 = next(s for s in case.layers if s.name == "conv1")
    plain, _ = layer_stages(conv1, (1.0,), (1.0,))
    entry = next(
        e for e in prof.latency.entries if e.key == plain.key(conv1.in_channels, conv1.out_channels, 32, 1)
    )
    assert entry.min_ms is not None and entry.min_ms <= entry.median_ms
    fit = prof.latency.network(layers_fingerprint(case.layers))
    assert fit is not None
    priced = predict_latency(case.layers, CompressionPlan(), prof).per_layer_ms["conv1"]
    assert priced == pytest.approx(fit.table_scale * entry.median_ms, rel=1e-6)
    with pytest.raises(AutomcError, match="statistic"):
        tiny_profile(case, (1.0,), validate=0, statistic="mean")


def test_recheck_flags_a_profile_whose_speed_no_longer_matches_the_machine() -> None:
    case = tiny_case("test_residual")
    profile = tiny_profile(case)
    assert recheck(profile, [case], tolerance=10.0) == []
    stale = replace(
        profile,
        latency=replace(
            profile.latency,
            networks=tuple(
                replace(
                    n, table_scale=n.table_scale * 50, network_overhead_ms=n.network_overhead_ms * 50 + 100.0
                )
                for n in profile.latency.networks
            ),
            table_scale=profile.latency.table_scale * 50,
            network_overhead_ms=profile.latency.network_overhead_ms * 50 + 100.0,
        ),
    )
    ((name, measured, predicted),) = recheck(stale, [case])
    assert name == case.name and predicted > 10 * measured


def test_only_a_phase_slower_than_its_fastest_base_timing_is_rescaled() -> None:
    base, pruned = CompressionPlan(), CompressionPlan(layers={"conv1": LayerChoice(keep_ratio=0.5)})
    measured = [
        Variant("a", base, 100, 2.4),
        Variant("a", pruned, 50, 1.2),
        Variant("b", base, 100, 3.0),
        Variant("b", pruned, 50, 2.0),
    ]
    out, notes = _to_fastest_phase(measured, {"a": 2.0, "b": 2.95}, {"a": 2.1, "b": 3.1})
    assert [v.measured_ms for v in out] == pytest.approx([2.0, 1.0, 3.0, 2.0])
    assert len(notes) == 1 and notes[0].startswith("a networks timed 20% slow")


def test_profile_whose_network_phase_ran_slow_predicts_the_base_at_its_fastest(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The base timed alone (before the table, after the phases) ran at 1 µs, far faster than
    any eager forward pass of its network phase (a fixed figure, so a loaded machine cannot
    close the gap): the fit is scaled to that, so the base is predicted at the fast timing."""
    case = tiny_case()
    alone = 0.001
    monkeypatch.setattr(hw_build, "measure_model_ms", lambda *a, **k: alone)
    prof = tiny_profile(case, validate=0)
    assert "test_tiny networks timed" in prof.device.description
    predicted = predict_latency(case.layers, CompressionPlan(), prof).total_ms
    assert predicted == pytest.approx(alone, rel=0.3)


def test_cli_profile_fits_each_input_shape(tmp_path: Path) -> None:
    out = tmp_path / "two.yaml"
    common = ["--threads", "1", "--validate", "0", "--fit-variants", "1", "--repeats", "3", "--warmup", "1"]
    argv = ["profile", "--model", "test_tiny", "--input", "1x3x8x8", "--input", "1x1x8x8", *common]
    assert main([*argv, "--fractions", "0.5,1", "--out", str(out), "--quiet"]) == 0
    prof = load_hw_profile(out)
    names = sorted(n.model for n in prof.latency.networks)
    assert names == ["test_tiny@1x8x8", "test_tiny@3x8x8"]
    for channels in (1, 3):
        model = models.create("test_tiny", in_channels=channels).eval()
        layers = graph.layers(model, torch.randn(1, channels, 8, 8))
        fit = prof.latency.network(layers_fingerprint(layers))
        assert fit is not None and fit.model == f"test_tiny@{channels}x8x8"
