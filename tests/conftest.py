import importlib.util
import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "2")


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory):
    """An ``AUTOMC_HOME`` shared by the pipeline test modules; the test_tiny/synthetic base model is trained once."""
    from automc import train

    mp = pytest.MonkeyPatch()
    path = tmp_path_factory.getbasetemp() / "automc_home"
    path.mkdir(exist_ok=True)
    mp.setenv("AUTOMC_HOME", str(path))
    train.base_model("test_tiny", "synthetic", options=train.FitOptions(progress=False))
    yield path
    mp.undo()


SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"


def _load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def load_script():
    """``load_script(name)``: the module of ``scripts/<name>.py`` (the benchmarks are scripts, not
    package modules)."""
    return _load_script
