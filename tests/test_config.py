"""``automc.config.SearchConfig``: defaults, file round trip, validation messages, overrides, CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import FrozenInstanceError, fields
from pathlib import Path

import pytest
import yaml

import automc
from automc.cli import main
from automc.config import (
    FLAT_NAMES,
    BaseConfig,
    ControllerConfig,
    FinetuneConfig,
    SearchConfig,
    flag_for,
)
from automc.errors import AutomcError
from automc.proxy import SHORT_TRAIN_LR

CUSTOM = SearchConfig().with_overrides(
    model="test_tiny",
    dataset="synthetic",
    data_root="/data/x",
    base_epochs=2,
    base_lr=0.05,
    budgets=["flops=0.5", "params=1M"],
    objectives=["acc", "latency"],
    controller="random",
    trials=7,
    profile=None,
    out="runs/a",
    export_onnx=False,
    kd_alpha=0.5,
    cpus_per_trial=2,
    seed=3,
)


def write(path: Path, data: object) -> Path:
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def header(**sections: object) -> dict:
    return {"schema": "automc/search-config", "version": 1, **sections}


def test_defaults_are_the_search_defaults() -> None:
    c = SearchConfig()
    assert (c.base.model, c.data.dataset, c.space, c.budgets, c.objectives) == (
        "resnet20",
        "digits",
        "joint",
        ("flops=0.3",),
        ("acc", "macs"),
    )
    assert (c.controller.name, c.controller.trials, c.hardware.profile, c.seed) == (
        "optuna-tpe",
        50,
        "auto",
        0,
    )
    assert (c.proxy.name, c.proxy.steps, c.proxy.calib_batches, c.proxy.batch_size) == (
        "short_train",
        10,
        4,
        128,
    )
    assert c.proxy.lr == SHORT_TRAIN_LR
    assert (c.finetune.top, c.finetune.epochs, c.finetune.kd_temperature, c.finetune.kd_alpha) == (
        3,
        3,
        4.0,
        0.9,
    )
    assert (c.distributed.cpus_per_trial, c.distributed.gpus_per_trial) == (1.0, 0.0)
    assert c.hardware.workers is None  # 0 on the CPU, min(4, cores) on CUDA (automc.device.Placement.of)
    assert (c.output.export_onnx, c.output.progress, c.output.out, c.base.weights) == (True, True, None, None)
    assert automc.SearchConfig is SearchConfig


def test_records_are_frozen_keyword_only_and_hashable() -> None:
    with pytest.raises(FrozenInstanceError):
        SearchConfig().seed = 1  # type: ignore[misc]
    with pytest.raises(TypeError):
        ControllerConfig("random", 3)  # type: ignore[misc]
    assert hash(CUSTOM) == hash(SearchConfig.from_dict(CUSTOM.to_dict()))
    assert SearchConfig(budgets=["flops=0.2"]).budgets == ("flops=0.2",)  # type: ignore[arg-type]


@pytest.mark.parametrize("suffix", [".yaml", ".yml", ".json"])
def test_round_trip(tmp_path: Path, suffix: str) -> None:
    path = CUSTOM.dump(tmp_path / "sub" / f"run{suffix}")
    text = path.read_text(encoding="utf-8")
    data = json.loads(text) if suffix == ".json" else yaml.safe_load(text)
    assert (data["schema"], data["version"]) == ("automc/search-config", 1)
    assert (data["controller"]["name"], data["controller"]["trials"]) == ("random", 7)
    back = SearchConfig.load(path)
    assert back == CUSTOM
    assert back.distributed.cpus_per_trial == 2.0 and isinstance(back.distributed.cpus_per_trial, float)
    assert back.budgets == ("flops=0.5", "params=1M")


def test_partial_file_keeps_defaults(tmp_path: Path) -> None:
    path = write(tmp_path / "run.yaml", header(controller={"trials": 60}, base={"lr": 1}))
    c = SearchConfig.load(path)
    assert c == SearchConfig(controller=ControllerConfig(trials=60), base=BaseConfig(lr=1.0))
    assert isinstance(c.base.lr, float)


@pytest.mark.parametrize(
    ("data", "expect"),
    [
        (header(controller={"trials": 0}), "controller.trials: must be >= 1, got 0"),
        (header(controller={"trails": 3}), "controller.trails: unknown key"),
        (header(colour="red"), "colour: unknown key"),
        (header(finetune={"kd_alpha": True}), "finetune.kd_alpha: must be a number, got True"),
        (header(controller={"trials": 2.5}), "controller.trials: must be an integer, got 2.5"),
        (header(base={"model": ["resnet20"]}), "base.model: must be a non-empty string, got ['resnet20']"),
        (header(budgets="flops=0.3"), "budgets: must be a list of non-empty strings, got 'flops=0.3'"),
        (header(budgets=["speed=2"]), "budgets: budget 'speed=2': expected METRIC=VALUE"),
        (header(objectives=["acc", "beauty"]), "objectives: objective 'beauty': unknown"),
        (header(proxy={"name": "synflow"}), "proxy.name: unknown search proxy 'synflow'"),
        (header(proxy={"steps": 0}), "proxy.steps: must be a positive integer, got 0"),
        (header(finetune={"kd_alpha": 1.5}), "finetune.kd_alpha: must be in [0, 1], got 1.5"),
        (header(finetune={"kd_temperature": 0}), "finetune.kd_temperature: must be > 0, got 0.0"),
        (header(finetune={"top": -1}), "finetune.top: must be >= 0, got -1"),
        (header(base={"lr": "1e-3"}), "base.lr: must be a number, got '1e-3' (text, not a number"),
        (header(base={"lr": -0.1}), "base.lr: must be a positive number, got -0.1"),
        (header(distributed={"cpus_per_trial": 0}), "distributed.cpus_per_trial: must be > 0, got 0.0"),
        (header(output={"progress": "yes"}), "output.progress: must be true or false, got 'yes'"),
        (header(output=["out"]), "output: must be a mapping, got list"),
        (header(seed=None), "seed: must not be null"),
        ({"schema": "automc/search-space", "version": 1}, "schema: expected 'automc/search-config'"),
        ({"schema": "automc/search-config", "version": 2}, "version: unsupported version 2"),
        (["not", "a", "mapping"], "top level must be a mapping"),
    ],
)
def test_bad_file_is_one_error_naming_file_and_field(tmp_path: Path, data: object, expect: str) -> None:
    path = write(tmp_path / "run.yaml", data)
    with pytest.raises(AutomcError) as info:
        SearchConfig.load(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ") and expect in message, message
    assert "\n" not in message


def test_all_problems_of_a_file_are_reported_at_once(tmp_path: Path) -> None:
    path = write(tmp_path / "run.yaml", header(controller={"trials": 0}, finetune={"epochs": -2}, extra=1))
    with pytest.raises(AutomcError, match=r"extra: unknown key.*controller.trials.*finetune.epochs"):
        SearchConfig.load(path)


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(AutomcError, match="nope.yaml: file not found"):
        SearchConfig.load(tmp_path / "nope.yaml")
    bad = tmp_path / "run.json"
    bad.write_text("{not json", encoding="utf-8")
    with pytest.raises(AutomcError, match="run.json: not valid JSON"):
        SearchConfig.load(bad)
    with pytest.raises(AutomcError, match=r"end in .yaml, .yml or .json, not '.txt'"):
        SearchConfig().dump(tmp_path / "run.txt")


def test_direct_construction_is_validated() -> None:
    with pytest.raises(AutomcError, match=r"^config: finetune.kd_alpha: must be in \[0, 1\], got 2.0$"):
        SearchConfig(finetune=FinetuneConfig(kd_alpha=2))
    with pytest.raises(AutomcError, match="controller: must be a ControllerConfig"):
        SearchConfig(controller={"trials": 3})  # type: ignore[arg-type]


def test_flat_names_cover_every_field_once() -> None:
    def paths(record: object, prefix: str = "") -> list[str]:
        out: list[str] = []
        for f in fields(record):  # type: ignore[arg-type]
            value = getattr(record, f.name)
            out += (
                paths(value, f"{prefix}{f.name}.")
                if hasattr(value, "__dataclass_fields__")
                else [prefix + f.name]
            )
        return out

    assert sorted(FLAT_NAMES.values()) == sorted(paths(SearchConfig()))
    assert len(set(FLAT_NAMES.values())) == len(FLAT_NAMES)


def test_with_overrides_old_names_and_dotted_names(tmp_path: Path) -> None:
    c = SearchConfig().with_overrides(model="resnet20", dataset="digits", budgets=["flops=0.3"], trials=60)
    assert c == SearchConfig(controller=ControllerConfig(trials=60))
    d = c.with_overrides(out=tmp_path / "run", proxy_steps=3, **{"hardware.profile": None, "finetune.top": 0})
    assert (d.output.out, d.proxy.steps, d.hardware.profile, d.finetune.top) == (
        str(tmp_path / "run"),
        3,
        None,
        0,
    )
    assert d.controller.trials == 60 and c.finetune.top == 3


def test_list_settings_take_a_comma_separated_string_as_the_command_line_does() -> None:
    c = SearchConfig().with_overrides(objectives="acc, macs,latency", budgets="flops=0.3,latency=2ms")
    assert c.objectives == ("acc", "macs", "latency") and c.budgets == ("flops=0.3", "latency=2ms")
    assert c == SearchConfig().with_overrides(
        objectives=["acc", "macs", "latency"], budgets=["flops=0.3", "latency=2ms"]
    )
    with pytest.raises(AutomcError, match="at least one objective"):
        SearchConfig().with_overrides(objectives=" , ")


@pytest.mark.parametrize(
    ("settings", "expect"),
    [
        ({"trials": 0}, "--trials must be >= 1, got 0"),
        ({"base_lr": -0.1}, "--base-lr must be a positive number, got -0.1"),
        ({"base_lr": float("nan")}, "--base-lr must be a positive number, got nan"),
        ({"proxy": "synflow"}, "--proxy: unknown search proxy 'synflow' (known: adaptive_bn, short_train)"),
        ({"proxy_steps": 0}, "--proxy-steps must be a positive integer, got 0"),
        ({"proxy_lr": 0.0}, "--proxy-lr must be a positive number, got 0.0"),
        ({"workers": -1}, "--workers must be >= 0, got -1"),
        ({"budgets": ["flops=lots"]}, "--budget: budget 'flops=lots': cannot parse the value 'lots'"),
        ({"kd_alpha": True}, "--kd-alpha must be a number, got True"),
        ({"controller.trials": 0}, "controller.trials must be >= 1, got 0"),
        ({"trails": 3}, "unknown setting 'trails'; did you mean 'trials'? (known: "),
    ],
)
def test_with_overrides_errors_name_the_flag(settings: dict, expect: str) -> None:
    with pytest.raises(AutomcError) as info:
        SearchConfig().with_overrides(**settings)
    assert expect in str(info.value), str(info.value)


def test_flag_spellings() -> None:
    assert [flag_for(n) for n in ("base_lr", "budgets", "export_onnx", "progress")] == [
        "--base-lr",
        "--budget",
        "--no-onnx",
        "--quiet",
    ]


# ---- the CLI ----
def test_cli_dump_config_and_flags_override_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out.yaml"
    assert main(["search", "--dump-config", str(out), "--trials", "7", "--budget", "flops=0.2"]) == 0
    assert capsys.readouterr().out.strip() == f"config written to {out}"
    first = SearchConfig.load(out)
    assert first == SearchConfig().with_overrides(trials=7, budgets=["flops=0.2"])

    out2 = tmp_path / "out2.json"
    argv = ["search", "--config", str(out), "--trials", "9", "--dump-config", str(out2)]
    assert main([*argv, "--profile", "none", "--no-onnx", "--quiet", "--objectives", "acc,params"]) == 0
    second = SearchConfig.load(out2)
    assert second.controller.trials == 9 and second.budgets == ("flops=0.2",)
    assert (second.hardware.profile, second.output.export_onnx, second.output.progress) == (
        None,
        False,
        False,
    )
    assert second.objectives == ("acc", "params")


def test_cli_repeated_and_comma_budgets(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "b.yaml"
    argv = ["search", "--budget", "flops=0.5,params=1M", "--budget", "size=1MB", "--dump-config", str(out)]
    assert main(argv) == 0
    assert SearchConfig.load(out).budgets == ("flops=0.5", "params=1M", "size=1MB")


@pytest.mark.parametrize(
    ("extra", "expect"),
    [
        (["--budget", ","], "automc: error: --budget: empty"),
        (["--trials", "0"], "automc: error: --trials must be >= 1, got 0"),
        (["--config", "{bad}"], "automc: error: {bad}: controller.trials: must be >= 1, got 0"),
    ],
)
def test_cli_bad_config_is_exit_2_and_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], expect: str
) -> None:
    bad = write(tmp_path / "bad.yaml", header(controller={"trials": 0}))
    out = tmp_path / "never.yaml"
    argv = ["search", *[a.replace("{bad}", str(bad)) for a in extra], "--dump-config", str(out)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.splitlines() == [expect.replace("{bad}", str(bad))]
    assert not out.exists()


def test_cli_dump_config_imports_neither_torch_nor_the_pipeline(tmp_path: Path) -> None:
    code = (
        "import sys; from automc.cli import main; "
        f"assert main(['search', '--dump-config', {str(tmp_path / 'c.yaml')!r}]) == 0; "
        "heavy = [m for m in sys.modules if m.split('.')[0] == 'torch' or m.startswith('automc.pipeline')]; "
        "assert not heavy, heavy"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert SearchConfig.load(tmp_path / "c.yaml") == SearchConfig()
