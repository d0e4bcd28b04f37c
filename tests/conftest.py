import os

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
