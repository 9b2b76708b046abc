"""The back-projection of the learning signal onto a delay, and the delay's update (a pipelined datapath)."""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from delrec.build import CoreBuild

from .fixed import clamp, delay_line

__all__ = ["DelayUpdate"]


class DelayUpdate(wiring.Component):
    """``S = sum_i L_i psi_i w[i, p]`` over a column's rows, then ``d = delay_update(d, parameter_step(S eps, k_d))``.

    Bit-exact with :mod:`delrec.arith`: the sum ``S`` is exact
    (:attr:`sum_bits` signed, enough for the ``N = rows x lanes`` products of
    a column), the product ``S eps`` is exact, the step is
    ``rshift_round(S eps, k_d)`` for any shift ``0..63`` (a shift beyond the
    product's width gives 0 or -1 rounded: ``0``), and the new delay is
    clamped to ``0..delay_max``. No memories; the only state is ``S``.

    ``row_en`` with ``row_weight[l]``, ``row_signal[l]``, ``row_psi[l]`` on
    cycle ``r`` (one row a cycle, back to back allowed): ``sum`` includes
    ``sum_l row_signal[l] row_psi[l] row_weight[l]`` from cycle
    ``r + ROW_LATENCY`` on. Stages: ``signal psi`` (a multiplier per lane)
    on ``r + 1``; times the weight (a multiplier per lane) on ``r + 2``;
    ``log2 P`` levels of the lane adder tree (one adder a level) on
    ``r + 3 ..``; the addition to ``S`` on ``r + ROW_LATENCY``, with
    ``ROW_LATENCY = 3 + log2 P``.

    ``clear`` on cycle ``c``: ``S = 0`` from ``c + 1`` on. A row whose
    addition falls on cycle ``c`` is lost: the core gives ``clear`` only when
    no row of the old column is in flight (``ROW_LATENCY`` cycles or more
    after its last ``row_en``); rows of the next column may start on the
    cycle of the ``clear`` itself.

    ``finish_en`` with ``trace``, ``delay``, ``shift`` on cycle ``f`` (at the
    earliest ``ROW_LATENCY`` cycles after the column's last ``row_en``; a
    ``clear`` may come on ``f`` itself or later): ``result_valid`` is high
    for the one cycle ``f + FINISH_LATENCY`` with ``result_delay``. Stages:
    ``S eps`` (the one wide multiplier) on ``f + 1``; the barrel shift
    ``S eps >> (k - 1)`` (``2 S eps`` for ``k = 0``) on ``f + 2``; the
    rounding ``(. + 1) >> 1`` on ``f + 3``; ``d - step`` on ``f + 4``; the
    clamp on ``f + 5``. Finishes may follow each other every cycle (each
    takes its ``S`` on its own cycle).

    Parameters
    ----------
    build : CoreBuild
        Widths (``build.spec``), ``N`` and ``P = build.lanes``.

    Attributes
    ----------
    clear, row_en, finish_en : In(1)
    row_weight : In(ArrayLayout(signed(weight_bits), P))
    row_signal : In(ArrayLayout(signed(signal_bits), P))
    row_psi : In(ArrayLayout(unsigned(psi_bits + 1), P))
    trace : In(signed(trace_bits))
    delay : In(unsigned(stored_delay_bits))
    shift : In(unsigned(6))
        ``k_d``, ``0..63``.
    result_valid : Out(1)
    result_delay : Out(unsigned(stored_delay_bits))
    sum : Out(signed(sum_bits))
        ``S``.
    """

    #: Multiplier stages of a row (``signal psi``, then the weight).
    PRODUCT_STAGES = 2
    #: Cycles from ``finish_en`` to ``result_valid``.
    FINISH_LATENCY = 5

    def __init__(self, build: CoreBuild):
        if not isinstance(build, CoreBuild):
            raise TypeError(f"Build must be a delrec.build.CoreBuild, not {build!r}")
        self._build = build
        spec = build.spec
        lanes = build.lanes
        #: Adder-tree levels of the lanes, ``log2 P``.
        self.TREE_LEVELS = (lanes - 1).bit_length()
        #: Cycles from ``row_en`` until ``sum`` includes the row.
        self.ROW_LATENCY = self.PRODUCT_STAGES + self.TREE_LEVELS + 1
        super().__init__({
            "clear": In(1),
            "row_en": In(1),
            "row_weight": In(data.ArrayLayout(signed(spec.weight_bits), lanes)),
            "row_signal": In(data.ArrayLayout(signed(spec.signal_bits), lanes)),
            "row_psi": In(data.ArrayLayout(unsigned(spec.psi_bits + 1), lanes)),
            "finish_en": In(1),
            "trace": In(signed(spec.trace_bits)),
            "delay": In(unsigned(spec.stored_delay_bits)),
            "shift": In(unsigned(6)),
            "result_valid": Out(1),
            "result_delay": Out(unsigned(spec.stored_delay_bits)),
            "sum": Out(signed(self.sum_bits)),
        })

    @property
    def sum_bits(self) -> int:
        """``signal_bits + psi_bits + 1 + weight_bits + ceil(log2 N) + 1``: ``S`` of ``N`` products, exact."""
        s = self._build.spec
        return s.signal_bits + s.psi_bits + 1 + s.weight_bits + (self._build.neurons - 1).bit_length() + 1

    # -- one operation a stage (small methods, so that a test can break one) ------------
    def _scaled_signal(self, signal, psi):
        """``L psi``: ``psi`` is unsigned (``0..2^psi_bits``)."""
        return signal * psi

    def _coarse_shift(self, value, shift):
        """``value >> (k - 1)``, or ``2 value`` for ``k = 0``: the barrel shifter of ``rshift_round``."""
        return Mux(shift == 0, value << 1, value >> (shift - 1)[:len(shift)])

    def _round(self, coarse):
        """``(coarse + 1) >> 1``: with :meth:`_coarse_shift`, ``(x + 2^(k-1)) >> k`` (``k = 0``: ``x``)."""
        return (coarse + 1) >> 1

    def elaborate(self, platform):
        s = self._build.spec
        lanes = self._build.lanes
        m = Module()

        # -- rows: two multipliers per lane, the lane adder tree, the sum -------------
        scaled = [Signal(signed(s.signal_bits + s.psi_bits + 2), name=f"scaled_{l}") for l in range(lanes)]
        weight_1 = [Signal(signed(s.weight_bits), name=f"weight_1_{l}") for l in range(lanes)]
        level = [Signal(signed(len(scaled[0]) + s.weight_bits), name=f"product_{l}") for l in range(lanes)]
        for l in range(lanes):
            m.d.sync += [scaled[l].eq(self._scaled_signal(self.row_signal[l], self.row_psi[l])),
                         weight_1[l].eq(self.row_weight[l]),
                         level[l].eq(scaled[l] * weight_1[l])]
        for depth in range(self.TREE_LEVELS):
            width = len(level[0]) + 1
            pairs = [(level[2 * n], level[2 * n + 1]) for n in range(len(level) // 2)]
            level = [Signal(signed(width), name=f"tree_{depth}_{n}") for n in range(len(pairs))]
            m.d.sync += [out.eq(a + b) for out, (a, b) in zip(level, pairs)]
        valid = delay_line(m, self.row_en, self.ROW_LATENCY - 1, "row_valid")[-1]
        total = Signal(signed(self.sum_bits))
        with m.If(self.clear):
            m.d.sync += total.eq(0)
        with m.Elif(valid):
            m.d.sync += total.eq(total + level[0])
        m.d.comb += self.sum.eq(total)

        # -- finish: the product, the shift, the rounding, the subtraction, the clamp --
        product = Signal(signed(self.sum_bits + s.trace_bits))
        coarse = Signal(signed(len(product) + 1))
        step = Signal(signed(len(product) + 1))
        moved = Signal(signed(max(len(step), s.stored_delay_bits + 1) + 1))
        shift_1 = Signal.like(self.shift)
        delays = delay_line(m, self.delay, 3, "finish_delay")
        valids = delay_line(m, self.finish_en, self.FINISH_LATENCY, "finish_valid")
        m.d.sync += [
            product.eq(total * self.trace), shift_1.eq(self.shift),
            coarse.eq(self._coarse_shift(product, shift_1)),
            step.eq(self._round(coarse)),
            moved.eq(delays[2] - step),
            self.result_delay.eq(clamp(moved, 0, s.delay_max)),
        ]
        m.d.comb += self.result_valid.eq(valids[-1])
        return m
