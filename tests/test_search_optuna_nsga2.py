"""The controller contract for ``optuna-nsga2``."""

from automc.testing.controller_contract import ControllerContract


class TestOptunaNsga2Contract(ControllerContract):
    controller_name = "optuna-nsga2"
    options = {"population_size": 4}
