"""The controller contract for ``optuna-tpe``."""

from automc.testing.controller_contract import ControllerContract


class TestOptunaTpeContract(ControllerContract):
    controller_name = "optuna-tpe"
    options = {"n_startup_trials": 5}
