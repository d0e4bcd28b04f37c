"""The controller contract for ``random``."""

from automc.testing.controller_contract import ControllerContract


class TestRandomContract(ControllerContract):
    controller_name = "random"
