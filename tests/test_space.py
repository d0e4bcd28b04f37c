"""Search-space files: loading, validation (all problems at once) and binding to layers."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import yaml

from automc.errors import AutomcError, ConfigError
from automc.plan import CompressionPlan
from automc.space import SearchSpace
from automc.testing.controller_contract import toy_layers

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ["prune", "quant", "lowrank", "joint"]


def write(tmp_path: Path, data: object, name: str = "space.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def space(**extra: object) -> dict:
    return {"schema": "automc/search-space", "version": 1, **extra}


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_spaces_load_and_bind_on_a_residual_model(name: str) -> None:
    bound = SearchSpace.load(ROOT / "search_spaces" / f"{name}.yaml").bind(toy_layers(), model="toy")
    assert len(bound.params) > 0
    names = {p.name for p in bound.params}
    assert not any(n.endswith("/fc") for n in names), "the frozen classifier got params"
    stem_choices = {n.split("/")[0] for n in names if n.endswith("/conv1")}
    # the stem's channels are searchable in the pruning spaces; it is never factorised nor below 8-bit weights
    assert stem_choices == {"prune": {"keep"}, "joint": {"keep", "a_bits"}}.get(name, set())
    rng = random.Random(0)
    for _ in range(20):
        values = bound.sample(rng)
        assert bound.contains(values)
        plan = bound.to_plan(values)
        plan.validate_for(bound.layers)
    identity = bound.to_plan(bound.identity_values())
    assert all(c.keep_ratio == 1.0 and c.rank is None for c in identity.layers.values())
    assert (
        all(c.w_bits == 8 for c in identity.layers.values())
        if name in ("quant", "joint")
        else not identity.layers
    )


@pytest.fixture(scope="module")
def resnet20_layers() -> list:
    torch = pytest.importorskip("torch")
    graph = pytest.importorskip("automc.graph")
    models = pytest.importorskip("automc.models")
    return graph.layers(models.create("resnet20"), torch.zeros(1, 3, 32, 32))


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_spaces_bind_on_resnet20(name: str, resnet20_layers: list) -> None:
    layers = resnet20_layers
    bound = SearchSpace.load(ROOT / "search_spaces" / f"{name}.yaml").bind(layers, model="resnet20")
    bound.to_plan(bound.extreme_values()).validate_for(layers)
    keep = [p for p in bound.params if p.field == "keep"]
    groups = [{s.group for s in layers if s.name in p.layers} for p in keep]
    assert all(len(g) == 1 for g in groups)
    assert len({next(iter(g)) for g in groups}) == len(keep)


def test_coupled_layers_share_one_keep_param_and_frozen_groups_get_none() -> None:
    data = yaml.safe_load((ROOT / "search_spaces" / "prune.yaml").read_text(encoding="utf-8"))
    bound = SearchSpace.from_dict({**data, "frozen": ["@first", "@last"]}).bind(toy_layers())
    keep = {p.name: p for p in bound.params}
    # group 0 holds the frozen stem, so the residual stream of block 1 is not pruned
    assert set(keep) == {"keep/layer1.0.conv1", "keep/layer2.0.conv1", "keep/layer2.0.conv2"}
    assert keep["keep/layer2.0.conv2"].layers == ("layer2.0.conv2", "layer2.0.shortcut")
    assert keep["keep/layer1.0.conv1"].grid()[0] == 0.2 and keep["keep/layer1.0.conv1"].grid()[-1] == 1.0
    assert len(keep["keep/layer1.0.conv1"].grid()) == 17
    plan = bound.to_plan(bound.uniform_values(0.5))
    assert plan.choice("layer2.0.conv2").keep_ratio == plan.choice("layer2.0.shortcut").keep_ratio == 0.5
    assert plan.choice("layer1.0.conv2").keep_ratio == 1.0
    plan.validate_for(bound.layers)


def test_rank_fractions_become_integer_ranks_and_one_means_no_factorisation() -> None:
    bound = SearchSpace.from_dict(space(rules=[{"select": "layer2.*", "rank": [0.25, 1.0]}])).bind(
        toy_layers()
    )
    values = {p.name: p.choices[0] for p in bound.params}
    plan = bound.to_plan(values)
    spec = next(s for s in bound.layers if s.name == "layer2.0.conv2")
    assert plan.choice("layer2.0.conv2").rank == round(0.25 * spec.max_rank) == 4
    assert plan.choice("layer2.0.shortcut").rank == 2  # max rank 8 (1x1 conv, 8 inputs)
    assert bound.to_plan(bound.identity_values()).choice("layer2.0.conv2").rank is None


def test_later_rules_override_earlier_ones_and_single_choices_are_fixed() -> None:
    data = space(
        criterion=["l1", "l2"],
        rules=[
            {"select": "*", "w_bits": [4, 8], "a_bits": 8},
            {"select": "re:layer2\\..*", "w_bits": [2, 4, 6]},
            {"select": "kind:conv2d", "keep": 0.5},
        ],
    )
    bound = SearchSpace.from_dict(data).bind(toy_layers())
    assert bound.param("w_bits/layer1.0.conv1").choices == (4, 8)
    assert bound.param("w_bits/layer2.0.conv1").choices == (2, 4, 6)
    assert bound.param("criterion").choices == ("l1", "l2")
    assert not any(n.startswith("a_bits/") or n.startswith("keep/") for n in bound.names)
    plan = bound.to_plan(bound.identity_values())
    assert plan.choice("layer1.0.conv1").a_bits == 8
    assert plan.choice("layer1.0.conv1").keep_ratio == 0.5
    assert plan.choice("layer2.0.conv2").keep_ratio == plan.choice("layer2.0.shortcut").keep_ratio == 0.5
    assert plan.criterion == "l1"
    assert bound.to_plan({**bound.identity_values(), "criterion": "l2"}).criterion == "l2"


def test_frozen_override_and_extreme_values() -> None:
    bound = SearchSpace.from_dict(
        space(frozen=["fc"], rules=[{"select": "*", "keep": {"low": 0.5, "high": 1.0, "step": 0.25}}])
    ).bind(toy_layers())
    assert "keep/conv1" in bound.names  # the stem is searchable once only fc is frozen
    extreme = bound.to_plan(bound.extreme_values())
    assert extreme.choice("conv1").keep_ratio == extreme.choice("layer1.0.conv2").keep_ratio == 0.5
    assert extreme.choice("fc") == CompressionPlan().choice("fc")


def test_layer_steps_follow_execution_order() -> None:
    bound = SearchSpace.from_dict(_FROZEN_STEM_JOINT).bind(toy_layers())
    steps = bound.layer_steps()
    assert [s.layer.name for s in steps] == [
        "layer1.0.conv1",
        "layer1.0.conv2",
        "layer2.0.conv1",
        "layer2.0.conv2",
        "layer2.0.shortcut",
    ]
    assert steps[0].keep_param == "keep/layer1.0.conv1" and steps[0].w_bits_param == "w_bits/layer1.0.conv1"
    assert steps[1].keep_param is None  # group 0 is frozen with the stem
    assert steps[4].keep_param is None  # the shortcut shares layer2.0.conv2's param


def test_distributions_match_params() -> None:
    optuna = pytest.importorskip("optuna")
    bound = SearchSpace.load(ROOT / "search_spaces" / "joint.yaml").bind(toy_layers())
    dists = bound.distributions()
    assert list(dists) == list(bound.names)
    keep = dists["keep/layer1.0.conv1"]
    assert isinstance(keep, optuna.distributions.FloatDistribution) and keep.step == pytest.approx(0.05)
    for name, value in bound.sample(random.Random(1)).items():
        assert dists[name]._contains(dists[name].to_internal_repr(value))


def test_values_outside_the_space_are_refused() -> None:
    bound = SearchSpace.load(ROOT / "search_spaces" / "joint.yaml").bind(toy_layers())
    values = bound.identity_values()
    assert bound.contains(values)
    for bad in (
        {**values, "keep/layer1.0.conv1": 0.33},
        {**values, "w_bits/layer1.0.conv1": 3},
        {**values, "extra": 1},
        {k: v for k, v in values.items() if k != "keep/layer1.0.conv1"},
    ):
        assert not bound.contains(bad)
        with pytest.raises(AutomcError, match="not a point of search space"):
            bound.to_plan(bad)


def test_malformed_file_reports_every_problem_with_file_and_key(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        space(
            rules=[
                {"select": "*", "w_bit": [4]},
                {"select": "re:(", "keep": {"low": 0.9, "high": 0.2}},
                {"select": "*", "keep": {"low": 0.2, "high": 1.0, "step": 0.3}, "rank": [0, 1.0]},
                {"select": "kind:lstm", "a_bits": [3, 9]},
            ],
            extra_top=1,
        ),
    )
    with pytest.raises(ConfigError) as err:
        SearchSpace.load(path)
    msg = str(err.value)
    assert msg.startswith(str(path))
    for piece in (
        "extra_top: unknown key",
        "rules[0].w_bit: unknown key",
        "rules[1].select: invalid regular expression",
        "rules[1].keep: low (0.9) must be <= high (0.2)",
        "rules[2].keep.step",
        "rules[2].rank",
        "rules[3].select: unknown layer kind 'lstm'",
        "rules[3].a_bits: bit-width 9 not allowed",
    ):
        assert piece in msg, piece
    assert "\n" not in msg


def test_selectors_that_match_no_layer_are_all_reported(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        space(
            frozen=["stem"], rules=[{"select": ["layer9.*", "layer1.*"], "keep": 0.5}, {"select": "re:head"}]
        ),
    )
    with pytest.raises(ConfigError) as err:
        SearchSpace.load(path).bind(toy_layers())
    msg = str(err.value)
    assert "frozen: 'stem' matches no layer" in msg
    assert "rules[0].select[0]: 'layer9.*' matches no layer" in msg
    assert "rules[1].select: 're:head' matches no layer" in msg
    assert "layer1.*" not in msg


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        ({"schema": "automc/search-space", "version": 2, "rules": []}, "version: unsupported version 2"),
        (
            {"schema": "automc/hw-profile", "version": 1, "rules": []},
            "schema: expected 'automc/search-space'",
        ),
        (space(), "rules: missing"),
        (space(rules=[]), "rules: must be a non-empty list"),
        (space(rules=[{"keep": 0.5}]), "rules[0].select: missing"),
        (space(rules=[{"select": "*", "keep": 1.5}]), "rules[0].keep: must be in (0, 1]"),
        (space(rules=[{"select": "*"}], criterion=[1]), "criterion: must be a criterion name"),
        (space(rules=[{"select": "*"}], prior={"threshold": 0.1}), "prior.sensitivity_csv: missing"),
    ],
)
def test_single_problems(tmp_path: Path, data: dict, needle: str) -> None:
    with pytest.raises(ConfigError) as err:
        SearchSpace.load(write(tmp_path, data))
    assert needle in str(err.value)


def test_non_overlapping_coupled_keep_ranges_are_an_error() -> None:
    data = space(
        rules=[
            {"select": "layer2.0.conv2", "keep": {"low": 0.2, "high": 0.4, "step": 0.1}},
            {"select": "layer2.0.shortcut", "keep": {"low": 0.6, "high": 1.0, "step": 0.1}},
        ]
    )
    with pytest.raises(ConfigError, match="coupled layers layer2.0.conv2, layer2.0.shortcut"):
        SearchSpace.from_dict(data, source="x.yaml").bind(toy_layers())


def test_space_module_does_not_import_torch() -> None:
    import subprocess
    import sys

    code = "import sys, automc.space, automc.search, automc.budget; print('torch' in sys.modules, 'optuna' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    assert out == ["False", "False"]


def test_sensitivity_prior_raises_the_keep_floor_of_sensitive_groups(tmp_path: Path) -> None:
    pytest.importorskip("automc.sensitivity")
    csv = tmp_path / "sens.csv"
    rows = ["layer,kind,param,value,acc", ",base,keep_ratio,1.0,0.90"]
    for keep, acc in ((0.25, 0.60), (0.5, 0.89), (0.75, 0.90)):
        rows.append(f"layer1.0.conv1,conv2d,keep_ratio,{keep},{acc}")
    for keep in (0.25, 0.5, 0.75):
        rows.append(f"layer2.0.conv1,conv2d,keep_ratio,{keep},0.90")
    csv.write_text("\n".join(rows) + "\n")
    data = space(
        rules=[{"select": "*", "keep": {"low": 0.2, "high": 1.0, "step": 0.1}}],
        prior={"sensitivity_csv": "sens.csv", "threshold": 0.02},
    )
    bound = SearchSpace.load(write(tmp_path, data)).bind(toy_layers())
    assert bound.param("keep/layer1.0.conv1").low == pytest.approx(0.5)  # 0.25 drops 30 points
    assert bound.param("keep/layer2.0.conv1").low == pytest.approx(0.3)  # 0.25 is fine -> next grid value up
    assert bound.param("keep/layer2.0.conv2").low == pytest.approx(0.2)  # no rows: unchanged
    missing = space(rules=[{"select": "*"}], prior={"sensitivity_csv": "nope.csv", "threshold": 0.02})
    with pytest.raises(ConfigError, match="prior.sensitivity_csv: file not found"):
        SearchSpace.load(write(tmp_path, missing, "m.yaml")).bind(toy_layers())


# Recorded from the code before quantizer/sparsity/lowrank rule keys existed: a space
# that does not use them must give these exact params, distributions, digest and plans.
# The space is joint.yaml as it was then (stem frozen with its group).
_FROZEN_STEM_JOINT = {
    "schema": "automc/search-space",
    "version": 1,
    "frozen": ["@first", "@last"],
    "criterion": "l1",
    "rules": [
        {
            "select": "*",
            "keep": {"low": 0.2, "high": 1.0, "step": 0.05},
            "w_bits": [4, 6, 8],
            "a_bits": [8, 32],
            "rank": [0.5, 0.75, 1.0],
        }
    ],
}
_JOINT_RESNET20_BLOCKS = {
    "layer1.0.conv1": "kwar",
    "layer1.0.conv2": "war",
    "layer1.1.conv1": "kwar",
    "layer1.1.conv2": "war",
    "layer1.2.conv1": "kwar",
    "layer1.2.conv2": "war",
    "layer2.0.conv1": "kwar",
    "layer2.0.conv2": "kwar",
    "layer2.0.shortcut.0": "war",
    "layer2.1.conv1": "kwar",
    "layer2.1.conv2": "war",
    "layer2.2.conv1": "kwar",
    "layer2.2.conv2": "war",
    "layer3.0.conv1": "kwar",
    "layer3.0.conv2": "kwar",
    "layer3.0.shortcut.0": "war",
    "layer3.1.conv1": "kwar",
    "layer3.1.conv2": "war",
    "layer3.2.conv1": "kwar",
    "layer3.2.conv2": "war",
}
_JOINT_RESNET20_DIGEST = "5daf3939c1f8"
_JOINT_RESNET20_SAMPLE0_PLAN_DIGEST = "cafd2feef06e0863"


def test_joint_space_on_resnet20_gives_the_recorded_distributions(resnet20_layers: list) -> None:
    optuna = pytest.importorskip("optuna")
    d = optuna.distributions
    per_letter = {
        "k": ("keep", d.FloatDistribution(0.2, 1.0, step=0.05)),
        "w": ("w_bits", d.CategoricalDistribution((4, 6, 8))),
        "a": ("a_bits", d.CategoricalDistribution((8, 32))),
        "r": ("rank", d.CategoricalDistribution((0.5, 0.75, 1.0))),
    }
    expected = {
        f"{per_letter[c][0]}/{layer}": per_letter[c][1]
        for layer, letters in _JOINT_RESNET20_BLOCKS.items()
        for c in letters
    }
    bound = SearchSpace.from_dict(_FROZEN_STEM_JOINT).bind(resnet20_layers, model="resnet20")
    dists = bound.distributions()
    assert list(dists) == list(expected)
    assert dists == expected
    assert bound.digest() == _JOINT_RESNET20_DIGEST
    plan = bound.to_plan(bound.sample(random.Random(0)))
    assert plan.digest() == _JOINT_RESNET20_SAMPLE0_PLAN_DIGEST
    assert all(
        c.quantizer == "uniform" and c.sparsity == 0.0 and c.lowrank == "svd" for c in plan.layers.values()
    )


def test_quantizer_sparsity_and_lowrank_rules_parse() -> None:
    spec = SearchSpace.from_dict(
        space(
            rules=[
                {"select": "*", "quantizer": ["kmeans", "uniform", "kmeans"], "sparsity": [0.5, 0.0]},
                {"select": "layer2.*", "quantizer": "pq", "lowrank": ["sparse_lowrank", "svd"]},
                {"select": "fc", "sparsity": {"low": 0.0, "high": 0.5, "step": 0.25}},
            ]
        )
    ).spec
    first, second, third = spec.rules
    assert first.quantizer == ("kmeans", "uniform") and first.sparsity == (0.0, 0.5)
    assert second.quantizer == ("pq",) and second.lowrank == ("sparse_lowrank", "svd")
    assert third.sparsity == (0.0, 0.25, 0.5)


@pytest.mark.parametrize(
    ("rule", "needle"),
    [
        ({"quantizer": "foo"}, "rules[0].quantizer: unknown quantizer 'foo' (known: "),
        ({"quantizer": [["kmeans"]]}, "rules[0].quantizer: must be a quantizer name"),
        ({"quantizer": []}, "rules[0].quantizer: must be a quantizer name"),
        ({"lowrank": ["svd", "tucker"]}, "rules[0].lowrank: unknown low-rank method 'tucker' (known: "),
        ({"lowrank": 3}, "rules[0].lowrank: must be a low-rank method name"),
        ({"sparsity": 1.0}, "rules[0].sparsity: sparsity 1.0 must be a number in [0, 1)"),
        ({"sparsity": [0.5, True]}, "rules[0].sparsity: sparsity True must be a number"),
        ({"sparsity": {"low": 0.0, "high": 1.0}}, "rules[0].sparsity.high: must be in [0, 1), got 1.0"),
        ({"sparsity": {"low": 0.0, "high": 0.9, "step": 1e-9}}, "rules[0].sparsity.step: step 1e-09 makes"),
        (
            {"keep": {"low": 0.2, "high": 1.0, "step": 1e-9}},
            "rules[0].keep.step: step 1e-09 makes 8e+08 values",
        ),
        ({"rank": [i / 20000 for i in range(1, 20001)]}, "rules[0].rank: 20000 choices (at most 10000)"),
    ],
)
def test_bad_rule_values_are_refused_naming_the_field(tmp_path: Path, rule: dict, needle: str) -> None:
    path = write(tmp_path, space(rules=[{"select": "*", **rule}]))
    with pytest.raises(ConfigError) as err:
        SearchSpace.load(path)
    assert str(err.value).startswith(f"{path}: ")
    assert needle in str(err.value)


def test_quantizer_and_lowrank_are_params_only_where_they_change_something() -> None:
    data = space(
        rules=[
            {"select": "*", "quantizer": ["uniform", "kmeans"], "lowrank": ["svd", "sparse_lowrank"]},
            {"select": "layer1.*", "w_bits": [4, 32], "rank": [0.5, 1.0]},
            {"select": "layer2.0.conv1", "w_bits": 32, "rank": 1.0, "sparsity": [0.0, 0.5]},
        ]
    )
    bound = SearchSpace.from_dict(data).bind(toy_layers())
    assert set(bound.names) == {
        f"{field}/layer1.0.{conv}"
        for field in ("w_bits", "rank", "quantizer", "lowrank")
        for conv in ("conv1", "conv2")
    } | {"sparsity/layer2.0.conv1"}
    assert bound.param("quantizer/layer1.0.conv1").choices == ("uniform", "kmeans")
    values = {
        **bound.identity_values(),
        "quantizer/layer1.0.conv1": "kmeans",
        "lowrank/layer1.0.conv1": "sparse_lowrank",
    }
    assert bound.to_plan(values).layers == {}  # 32 bits and no rank: the names change nothing
    values.update({"w_bits/layer1.0.conv1": 4, "rank/layer1.0.conv1": 0.5})
    choice = bound.to_plan(values).choice("layer1.0.conv1")
    assert (choice.w_bits, choice.quantizer, choice.rank, choice.lowrank) == (
        4,
        "kmeans",
        4,
        "sparse_lowrank",
    )
    extreme = bound.to_plan(bound.extreme_values())
    assert extreme.choice("layer2.0.conv1").sparsity == 0.5
    assert extreme.choice("layer1.0.conv1").quantizer == "uniform"


def test_full_space_on_resnet20_searches_quantizers_sparsity_and_lowrank(resnet20_layers: list) -> None:
    optuna = pytest.importorskip("optuna")
    bound = SearchSpace.load(ROOT / "search_spaces" / "full.yaml").bind(resnet20_layers, model="resnet20")
    dists = bound.distributions()
    assert dists["quantizer/layer1.0.conv2"] == optuna.distributions.CategoricalDistribution(
        ("uniform", "kmeans", "pq", "rq")
    )
    categorical = optuna.distributions.CategoricalDistribution
    assert dists["quantizer/layer3.0.conv1"] == categorical(("uniform", "asymmetric"))
    assert dists["sparsity/layer2.0.conv1"] == categorical((0.0, 0.25, 0.5, 0.75))
    assert "sparsity/layer1.0.conv2" not in dists  # fixed at 0: pq/rq are not priced on sparse weights
    assert dists["lowrank/layer3.1.conv1"] == categorical(("svd", "sparse_lowrank"))
    assert not any(n.startswith("lowrank/layer1") or n.startswith("rank/layer2") for n in dists)
    seen: dict[str, set] = {"quantizer": set(), "sparsity": set(), "lowrank": set()}
    rng = random.Random(0)
    for _ in range(30):
        values = bound.sample(rng)
        assert all(dists[k]._contains(dists[k].to_internal_repr(v)) for k, v in values.items())
        plan = bound.to_plan(values)
        plan.validate_for(resnet20_layers)
        for choice in plan.layers.values():
            seen["quantizer"].add(choice.quantizer)
            seen["sparsity"].add(choice.sparsity)
            seen["lowrank"].add(choice.lowrank)
    assert seen["quantizer"] == {"uniform", "asymmetric", "kmeans", "pq", "rq"}
    assert seen["sparsity"] == {0.0, 0.25, 0.5, 0.75}
    assert seen["lowrank"] == {"svd", "sparse_lowrank"}


def test_compress_applies_a_sampled_plan_with_codebooks_sparsity_and_sparse_lowrank() -> None:
    torch = pytest.importorskip("torch")
    from automc import compress, graph, models
    from automc.compress.sparsity import is_masked

    model = models.create("test_residual")
    example = torch.randn(2, 3, 32, 32)
    layers = graph.layers(model, example[:1])
    data = space(
        rules=[
            {
                "select": "*",
                "keep": {"low": 0.5, "high": 1.0, "step": 0.25},
                "w_bits": [3, 4],
                "quantizer": ["kmeans", "asymmetric"],
                "sparsity": [0.5, 0.75],
                "rank": [0.5, 1.0],
                "lowrank": ["sparse_lowrank", "svd"],
            }
        ]
    )
    bound = SearchSpace.from_dict(data).bind(layers, model="test_residual")
    plan = bound.to_plan(bound.extreme_values())
    choices = list(plan.layers.values())
    assert {c.quantizer for c in choices} == {"kmeans"} and {c.sparsity for c in choices} == {0.75}
    assert any(c.lowrank == "sparse_lowrank" and c.rank is not None for c in choices)
    compressed = compress.apply(model, plan, example[:1], seed=0)
    compressed.eval()
    out = compressed(example)
    assert out.shape == (2, 10) and bool(torch.isfinite(out).all())
    assert any(is_masked(m) for m in compressed.modules())
    assert "kmeans" in repr(compressed)


@pytest.mark.parametrize("controller", ["random", "optuna-tpe", "optuna-nsga2"])
def test_controllers_sample_the_quantizer_sparsity_and_lowrank_dimensions(controller: str) -> None:
    pytest.importorskip("optuna")
    from automc.testing.controller_contract import ControllerContract, synthetic_evaluate

    data = space(
        rules=[
            {
                "select": "*",
                "w_bits": [4, 8],
                "quantizer": ["uniform", "kmeans"],
                "sparsity": [0.0, 0.5],
                "rank": [0.5, 1.0],
                "lowrank": ["svd", "sparse_lowrank"],
            }
        ]
    )
    bound = SearchSpace.from_dict(data).bind(toy_layers(), model="toy")
    contract = ControllerContract()
    contract.controller_name = controller
    ctrl = contract.make_controller(space=bound, recorder=contract.make_recorder(None, study_name=controller))
    evaluate = synthetic_evaluate(bound.layers)
    seen = set()
    for _ in range(8):
        candidate = ctrl.ask()
        assert candidate is not None
        ctrl.tell(candidate.id, evaluate(candidate))
        seen |= {(c.quantizer, c.sparsity, c.lowrank) for c in candidate.plan.layers.values()}
    assert {q for q, _, _ in seen} == {"uniform", "kmeans"}
    assert {s for _, s, _ in seen} == {0.0, 0.5}
    assert {m for _, _, m in seen} == {"svd", "sparse_lowrank"}


def test_keep_ratios_bound_for_a_blocked_layout_keep_every_plan_on_it(resnet20_layers: list) -> None:
    """Bound with the runtime's channel block, no sampled plan has a float conv off the blocked
    layout (as the shipped ONNX Runtime profile prices it); bound without, most have."""
    from automc.cost import load_profile
    from automc.cost.latency import predict_latency

    profile = load_profile("cpu-x86-2core-ort")
    block = profile.runtime.channel_block
    assert block > 1
    space_def = SearchSpace.load(ROOT / "search_spaces" / "joint.yaml")
    aligned = space_def.bind(resnet20_layers, model="resnet20", channel_block=block)
    plain = space_def.bind(resnet20_layers, model="resnet20")
    assert aligned.channel_block == block and plain.channel_block == 1
    keeps = [p for p in aligned.params if p.field == "keep"]
    assert keeps and all(p.kind == "categorical" and p.grid()[-1] == 1.0 for p in keeps)
    assert [p.name for p in keeps] == [p.name for p in plain.params if p.field == "keep"]
    rng = random.Random(0)
    off_aligned, off_plain = [], []
    for _ in range(20):
        plan = aligned.to_plan(aligned.sample(rng))
        plan.validate_for(resnet20_layers)
        off_aligned.append(predict_latency(resnet20_layers, plan, profile).off_layout)
        off_plain.append(
            predict_latency(resnet20_layers, plain.to_plan(plain.sample(rng)), profile).off_layout
        )
    assert off_aligned == [0] * 20
    assert sum(n > 0 for n in off_plain) >= 10
    assert aligned.digest() != plain.digest()
