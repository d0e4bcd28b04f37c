"""The controller contract for ``optuna-gp`` (GP-based BO with constraint models; needs torch)."""

import pytest

from automc.testing.controller_contract import ControllerContract

pytest.importorskip("torch")
pytest.importorskip("scipy")


@pytest.mark.slow  # each ask fits GPs with torch: minutes for the whole class on 2 cores
class TestOptunaGpContract(ControllerContract):
    controller_name = "optuna-gp"
    options = {"n_startup_trials": 4}
