"""Every registered pruning criterion passes the shipped criterion contract."""

import pytest

from automc.compress import criteria
from automc.testing.criterion_contract import CriterionContract


@pytest.mark.parametrize("criterion_name", criteria.names())
class TestCriteria(CriterionContract):
    pass
