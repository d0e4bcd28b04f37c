"""The compress registries: every lazy entry resolves, and the names are those cost.formats prices."""

import subprocess
import sys

import pytest

from automc.compress import criteria, lowrank, quantizers
from automc.cost import formats
from automc.errors import AutomcError
from automc.registry import lookup


def test_quantizer_and_lowrank_names_are_the_formats() -> None:
    assert quantizers.names() == formats.quantizer_names()
    assert lowrank.names() == formats.lowrank_method_names()


@pytest.mark.parametrize(
    ("kind", "module"), [("criteria", criteria), ("quantizers", quantizers), ("lowrank", lowrank)]
)
def test_automc_list_reads_the_module_registry(kind: str, module: object) -> None:
    assert lookup(kind) is module.REGISTRY  # type: ignore[attr-defined]


@pytest.mark.parametrize("name", criteria.names())
def test_every_criterion_resolves_to_a_fresh_instance(name: str) -> None:
    first, second = criteria.get(name), criteria.get(name)
    assert first is not second
    assert callable(first.select) and callable(first.reconstruct)


@pytest.mark.parametrize("name", quantizers.names())
def test_every_quantizer_resolves(name: str) -> None:
    q = quantizers.get(name)
    assert callable(q) and q.storage_bits((4, 8), 4) > 0


@pytest.mark.parametrize("name", lowrank.names())
def test_every_lowrank_method_resolves(name: str) -> None:
    assert callable(lowrank.get(name))


@pytest.mark.parametrize(
    ("module", "kind"),
    [(criteria, "pruning criterion"), (quantizers, "weight quantizer"), (lowrank, "low-rank method")],
)
def test_unknown_name_lists_the_known_ones(module, kind: str) -> None:
    with pytest.raises(AutomcError, match=f"unknown {kind} 'nope' \\(known: {module.names()[0]}"):
        module.get("nope")


def test_listing_the_registries_imports_no_torch() -> None:
    code = (
        "import sys\n"
        "from automc.registry import lookup\n"
        "for kind in ('criteria', 'quantizers', 'lowrank'):\n"
        "    assert lookup(kind).describe()\n"
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
