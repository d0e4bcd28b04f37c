"""Energy per inference from an energy table (``hw_profiles/energy-45nm.yaml``): compute + memory.

Compute energy of a stage (a layer, or one low-rank factor) = ``MACs * (mult + add)``:
    * Precision of a MAC: float32 when ``w_bits`` or ``a_bits`` is 32 (weight-only quantized
      weights are dequantized before the multiply) and for codebook quantizers (k-means,
      PQ, RQ store float codewords); float16 when the wider of the two is 16; otherwise an
      integer MAC of ``w_bits x a_bits``.
    * Multiply energy scales with ``w_bits * a_bits`` from the nearest table entry at or
      above: ``E = E_entry * (w_bits * a_bits) / entry_bits**2`` (the widest entry when none
      is wide enough). An 8x8-bit int multiply is exactly the int8 entry; 4x8 bits is half.
    * Add energy scales linearly with the accumulator width ``b``:
      ``E = E_entry * b / entry_bits`` from the nearest entry at or above. Float MACs
      accumulate at the float width; integer MACs at ``min(32, w_bits + a_bits +
      ceil(log2(fan_in)))``, the width that cannot overflow.
    * Dense compute: unstructured sparsity does not reduce MACs or compute energy.

Memory energy of a stage (per bit = access energy / access bits of the table entry):
    * Traffic is counted at the data's bit-widths: weights at their storage bits (codes,
      scales, codebooks, sparse indices, 32-bit biases), inputs at the layer's ``a_bits``,
      outputs at the layer's ``a_bits`` too (an integer layer writes requantised outputs, a
      float layer float32). Layers run one after the other: every stage reads its input
      from and writes its output to DRAM (no cross-layer fusion).
    * DRAM: with ``B`` the on-chip buffer in bits, ``W``/``I``/``O`` the weight, input and
      output bits of the stage: if ``W + I + O <= B`` everything moves once,
      ``W + I + O``. Otherwise tiling, the cheaper of
      weight-stationary ``W + ceil(W / (B/2)) * I + O`` (weight tiles of half the buffer,
      inputs re-fetched once per weight tile) and input-stationary
      ``I + ceil(I / (B/2)) * W + O`` (input tiles of half the buffer, weights re-fetched per
      input tile). Tiles split output channels (weight-stationary) or positions
      (input-stationary), so outputs are written once; convolution halos are ignored.
    * SRAM: every MAC reads its weight and its input from the buffer once, at their bits
      (``MACs * (weight storage bits / weights + a_bits)``), and each output is written
      once. Partial sums stay in the accumulator; register-file energy is not counted.

Caveat: this is an analytic model in the spirit of Horowitz (ISSCC 2014) and Han et al.,
not a measurement; use it to rank candidates, not to predict a battery's life.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from automc.cost.flops import Stage
from automc.errors import UnsupportedLayerError
from automc.schema.energy import EnergyTable

PJ_PER_MJ = 1e9
PJ_PER_J = 1e12


def mac_precision(w_bits: int, a_bits: int, *, codebook: bool = False) -> tuple[str, int, int]:
    """``(dtype, w_bits, a_bits)`` a MAC runs at (see the module docstring)."""
    widest = max(w_bits, a_bits)
    if codebook or widest > 16:
        return ("float", 32, 32)
    if widest > 8:
        return ("float", 16, 16)
    return ("int", w_bits, a_bits)


def accumulator_bits(dtype: str, w_bits: int, a_bits: int, fan_in: int) -> int:
    """Accumulator width: the float width, or ``min(32, w + a + ceil(log2(fan_in)))`` for ints."""
    if dtype == "float":
        return max(w_bits, a_bits)
    return min(32, w_bits + a_bits + (max(1, fan_in) - 1).bit_length())


def mult_energy_pj(table: EnergyTable, dtype: str, w_bits: int, a_bits: int) -> float:
    """Energy of one ``w_bits x a_bits`` multiply, scaled with ``w_bits * a_bits``.

    Raises:
        UnsupportedLayerError: the table has no ``dtype`` multiply entry.
    """
    entries = table.ops("mult", dtype)
    if not entries:
        raise UnsupportedLayerError(f"energy table {table.name!r} has no {dtype} mult entry")
    product = w_bits * a_bits
    entry = next((e for e in entries if e.bits * e.bits >= product), entries[-1])
    return entry.energy_pj * product / (entry.bits * entry.bits)


def add_energy_pj(table: EnergyTable, dtype: str, bits: int) -> float:
    """Energy of one ``bits``-wide add, scaled linearly with ``bits``.

    Raises:
        UnsupportedLayerError: the table has no ``dtype`` add entry.
    """
    entries = table.ops("add", dtype)
    if not entries:
        raise UnsupportedLayerError(f"energy table {table.name!r} has no {dtype} add entry")
    entry = next((e for e in entries if e.bits >= bits), entries[-1])
    return entry.energy_pj * bits / entry.bits


def mac_energy_pj(
    table: EnergyTable, w_bits: int, a_bits: int, fan_in: int, *, codebook: bool = False
) -> float:
    """Energy of one multiply-accumulate (multiply + accumulate add) at the given precision."""
    dtype, w, a = mac_precision(w_bits, a_bits, codebook=codebook)
    return mult_energy_pj(table, dtype, w, a) + add_energy_pj(
        table, dtype, accumulator_bits(dtype, w, a, fan_in)
    )


def memory_pj_per_bit(table: EnergyTable, level: str) -> float:
    """Energy per bit moved at memory ``level`` (``sram``, ``dram``, ``register_file``).

    Raises:
        UnsupportedLayerError: the table has no entry for ``level``.
    """
    entry = table.level(level)
    if entry is None:
        raise UnsupportedLayerError(f"energy table {table.name!r} has no {level} entry")
    return entry.energy_pj_per_bit


class Traffic(NamedTuple):
    """DRAM traffic of one stage (an immutable ``NamedTuple``, cheap on the hot path).

    Attributes:
        dram_bits: bits moved between DRAM and the chip.
        strategy: ``fits``, ``weight_stationary`` or ``input_stationary``.
        refetches: how many times the re-fetched operand is read (1 when it fits).
    """

    dram_bits: int
    strategy: str
    refetches: int


def dram_traffic(*, weight_bits: int, input_bits: int, output_bits: int, buffer_bytes: int) -> Traffic:
    """DRAM traffic of one stage under the buffer/tiling rule of the module docstring."""
    return Traffic(*_dram(weight_bits, input_bits, output_bits, buffer_bytes * 8))


def _dram(weight_bits: int, input_bits: int, output_bits: int, buffer_bits: int) -> tuple[int, str, int]:
    total = weight_bits + input_bits + output_bits
    if total <= buffer_bits:
        return total, "fits", 1
    half = max(1, buffer_bits // 2)
    weight_tiles = -(-weight_bits // half)
    input_tiles = -(-input_bits // half)
    weight_stationary = weight_bits + weight_tiles * input_bits + output_bits
    input_stationary = input_bits + input_tiles * weight_bits + output_bits
    if weight_stationary <= input_stationary:
        return weight_stationary, "weight_stationary", max(1, weight_tiles)
    return input_stationary, "input_stationary", max(1, input_tiles)


def dram_power_w(connections: float, hz: float, *, table: EnergyTable | None = None) -> float:
    """Power in watts of one 32-bit DRAM access per connection, ``hz`` times a second.

    The seed's worked figure: 1G connections at 20 Hz at 640 pJ per access = 12.8 W. Uses the
    table's DRAM entry (per ``bits``-bit access); the shipped ``energy-45nm`` table when None.
    """
    if table is None:
        from automc.cost import load_energy_table

        table = load_energy_table("energy-45nm")
    entry = table.level("dram")
    if entry is None:
        raise UnsupportedLayerError(f"energy table {table.name!r} has no dram entry")
    return connections * hz * entry.energy_pj * (32 / entry.bits) / PJ_PER_J


class EnergyModel:
    """Prices stages with one energy table and one on-chip buffer size (caches MAC energies).

    Args:
        table: the energy table.
        onchip_buffer_bytes: on-chip buffer; the table's default when None.
    """

    def __init__(self, *, table: EnergyTable, onchip_buffer_bytes: int | None = None) -> None:
        self.table = table
        self.buffer_bytes = int(onchip_buffer_bytes or table.onchip_buffer_bytes)
        self.buffer_bits = self.buffer_bytes * 8
        self.sram_pj_per_bit = memory_pj_per_bit(table, "sram")
        self.dram_pj_per_bit = memory_pj_per_bit(table, "dram")
        self._mac: dict[tuple[int, int, int, bool], float] = {}

    def mac_pj(self, w_bits: int, a_bits: int, fan_in: int, *, codebook: bool = False) -> float:
        """Cached :func:`mac_energy_pj` (keyed by ``ceil(log2(fan_in))``, all the accumulator needs)."""
        key = (w_bits, a_bits, (max(1, fan_in) - 1).bit_length(), codebook)
        value = self._mac.get(key)
        if value is None:
            value = mac_energy_pj(self.table, w_bits, a_bits, fan_in, codebook=codebook)
            self._mac[key] = value
        return value

    def memory_pj(
        self,
        *,
        macs: int,
        weights: int,
        weight_bits: int,
        bias_bits: int,
        input_bits: int,
        output_bits: int,
        a_bits: int,
    ) -> float:
        """Memory energy of one stage (DRAM traffic + SRAM accesses), in pJ."""
        dram_bits = _dram(weight_bits + bias_bits, input_bits, output_bits, self.buffer_bits)[0]
        per_use_bits = macs * (weight_bits / max(1, weights) + a_bits) + output_bits
        return dram_bits * self.dram_pj_per_bit + per_use_bits * self.sram_pj_per_bit

    def layer_pj(
        self,
        stages: Sequence[Stage],
        weight_bits: Sequence[int],
        bias_bits: int,
        w_bits: int,
        a_bits: int,
        codebook: bool,
    ) -> tuple[float, float]:
        """``(compute_pj, memory_pj)`` of a layer's stages; the bias travels with the last stage.

        Raises:
            UnsupportedLayerError: the table cannot price the layer's precision.
        """
        compute_pj = memory_pj = 0.0
        last = len(stages) - 1
        for i, stage in enumerate(stages):
            compute_pj += stage.macs * self.mac_pj(w_bits, a_bits, stage.fan_in, codebook=codebook)
            memory_pj += self.memory_pj(
                macs=stage.macs,
                weights=stage.weights,
                weight_bits=weight_bits[i],
                bias_bits=bias_bits if i == last else 0,
                input_bits=stage.in_elems * a_bits,
                output_bits=stage.out_elems * a_bits,
                a_bits=a_bits,
            )
        return compute_pj, memory_pj
