"""``automc train`` through the real CLI entry point."""

from __future__ import annotations

import torch

from automc import models
from automc.cli import main

torch.set_num_threads(2)


def test_train_then_cache_hit_and_weights_out(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("AUTOMC_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    argv = ["train", "--model", "test_tiny", "--dataset", "synthetic", "--epochs", "1", "--no-progress"]
    assert main([*argv, "--weights-out", str(tmp_path / "tiny.pt")]) == 0
    out = capsys.readouterr().out
    assert "trained in" in out and "test accuracy: " in out
    cache_line = next(line for line in out.splitlines() if line.startswith("cached weights: "))
    cached = cache_line.split(": ", 1)[1]
    assert cached.startswith(str(tmp_path / "home" / "base_models")) and cached.endswith(".pt")
    reloaded = models.create("test_tiny", weights=tmp_path / "tiny.pt")
    assert torch.equal(reloaded.fc.weight, torch.load(cached, weights_only=True)["fc.weight"])

    assert main(argv) == 0
    again = capsys.readouterr().out
    assert "loaded from cache" in again and cache_line in again


def test_train_unknown_model_is_one_line_exit_2(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("AUTOMC_HOME", str(tmp_path))
    assert main(["train", "--model", "foo", "--dataset", "synthetic", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("automc: error: unknown model 'foo' (known: ")
    assert err.count("\n") == 1


def test_train_bad_flags_are_exit_2(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("AUTOMC_HOME", str(tmp_path))
    assert main(["train", "--model", "test_tiny", "--dataset", "synthetic", "--epochs", "0"]) == 2
    assert "--epochs must be at least 1" in capsys.readouterr().err
    assert main(["train", "--model", "test_tiny", "--dataset", "nope"]) == 2
    assert "unknown dataset 'nope'" in capsys.readouterr().err
    assert main(["train", "--model", "test_tiny", "--dataset", "cifar10", "--data-root", str(tmp_path)]) == 2
    assert "--data-root" in capsys.readouterr().err
