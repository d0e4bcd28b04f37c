"""Every registered weight quantizer passes the shipped quantizer contract."""

import pytest

from automc.compress import quantizers
from automc.testing.quantizer_contract import QuantizerContract


@pytest.mark.parametrize("quantizer_name", quantizers.names())
class TestQuantizers(QuantizerContract):
    pass
