"""The back-projection of the learning signal onto a delay, and the delay's update (rows pipelined, finish serial)."""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from delrec.build import CoreBuild

from .fixed import clamp, delay_line

__all__ = ["DelayUpdate"]


class DelayUpdate(wiring.Component):
    """``S = sum_i L_i psi_i w[i, p]`` over a column's rows, then ``d = delay_update(d, parameter_step(S eps, k_d))``.

    Bit-exact with :mod:`delrec.arith` for ``0 <= psi <= 2^psi_bits`` (the
    surrogate's range): the sum ``S`` is exact (kept in :attr:`acc_bits`
    signed bits, the exact bound for the ``N = rows x lanes`` products of a
    column; ``sum`` shows it sign-extended to :attr:`sum_bits`), the product
    ``S eps`` is exact, the step is ``rshift_round(S eps, k_d)`` for any
    shift ``0..63``, and the new delay is clamped to ``0..delay_max``. No
    memories.

    **Rows** (pipelined, one a cycle): ``row_en`` with ``row_weight[l]``,
    ``row_signal[l]``, ``row_psi[l]`` on cycle ``r`` (back to back allowed):
    ``sum`` includes ``sum_l row_signal[l] row_psi[l] row_weight[l]`` from
    cycle ``r + ROW_LATENCY`` on. Stages: ``signal psi`` (a multiplier per
    lane) on ``r + 1``; times the weight (a multiplier per lane) on
    ``r + 2``; ``log2 P`` levels of the lane adder tree (one adder a level)
    on ``r + 3 ..``; the addition to ``S`` on ``r + ROW_LATENCY``, with
    ``ROW_LATENCY = 3 + log2 P``. (With ``P = 1`` the second multiplier and
    ``S`` are one DSP multiply-accumulate.)

    ``clear`` on cycle ``c``: ``S = 0`` from ``c + 1`` on. A row whose
    addition falls on cycle ``c`` is lost: the core gives ``clear`` only when
    no row of the old column is in flight (``ROW_LATENCY`` cycles or more
    after its last ``row_en``); rows of the next column may start on the
    cycle of the ``clear`` itself.

    **Finish** (serial): ``finish_en`` with ``trace``, ``delay``, ``shift``
    on cycle ``f`` (at the earliest ``ROW_LATENCY`` cycles after the
    column's last ``row_en``), taking ``S`` of that cycle: ``result_valid``
    is high for the one cycle ``f + finish_latency(k)`` with
    ``result_delay`` (held until the next result), where
    ``finish_latency(k) = acc_bits + k + 2`` (:meth:`finish_latency`;
    ``k = shift``; the SHD build, ``acc_bits = 31``: ``33 + k``, 96 at
    most, well within a column of ``B = 256`` rows). Stages: ``S`` into a shift register on ``f``; the
    shift-and-add multiply ``S eps``, one bit of ``S`` a cycle, on
    ``f + 1 .. f + acc_bits`` (an adder of ``trace_bits + 1`` bits; the
    product's low bits shift into the register behind ``S``'s); the
    rounding shift, one bit a cycle, on ``f + acc_bits + 1 ..
    f + acc_bits + k`` (``rshift_round(x, k) = (x >> k) + bit k - 1 of x``:
    the last bit shifted out is the rounding); then one cycle for
    ``d - step`` (the step saturated to ``stored_delay_bits + 1`` bits,
    which changes no result) and the clamp, registered. A finish does not
    use ``S`` after cycle ``f``: the ``clear`` and the next column's rows
    may come on ``f`` or any later cycle. The next ``finish_en`` comes on
    the cycle of ``result_valid`` or later (one is ignored while a finish
    runs).

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
        ``0..2^psi_bits``.
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
    #: Cycles of a finish beyond its multiply and its shift (:meth:`finish_latency`).
    FINISH_OVERHEAD = 2

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
        #: Cycles of the serial multiply ``S eps``: one per bit of ``S``.
        self.MULTIPLY_CYCLES = self.acc_bits
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

    @staticmethod
    def widths(build: CoreBuild) -> tuple[int, int]:
        """``(sum_bits, ROW_LATENCY)`` of the unit a build has, without building it."""
        s = build.spec
        sum_bits = s.signal_bits + s.psi_bits + 1 + s.weight_bits + (build.neurons - 1).bit_length() + 1
        return sum_bits, DelayUpdate.PRODUCT_STAGES + (build.lanes - 1).bit_length() + 1

    @property
    def sum_bits(self) -> int:
        """``signal_bits + psi_bits + 1 + weight_bits + ceil(log2 N) + 1``: the width of ``sum``."""
        return self.widths(self._build)[0]

    @property
    def acc_bits(self) -> int:
        """``sum_bits - 2``: the exact signed width of ``S`` for ``psi <= 2^psi_bits``.

        ``|L psi w| <= 2^(signal_bits - 1 + psi_bits + weight_bits - 1)``
        (reached, positive, by ``L = -2^(signal_bits-1)``, ``w = -2^(weight_bits-1)``),
        ``N`` of them at most ``2^ceil(log2 N)`` times that.
        """
        return self.sum_bits - 2

    def finish_latency(self, shift: int) -> int:
        """Cycles from ``finish_en`` to ``result_valid`` for a shift ``k``: ``acc_bits + k + 2``."""
        if not 0 <= shift <= 63:
            raise ValueError(f"Shift must be in 0..63, not {shift!r}")
        return self.MULTIPLY_CYCLES + shift + self.FINISH_OVERHEAD

    # -- one operation each (small methods, so that a test can break one) ---------------
    def _scaled_signal(self, signal, psi):
        """``L psi``: ``psi`` is unsigned (``0..2^psi_bits``)."""
        return signal * psi

    @property
    def step_bits(self) -> int:
        """``stored_delay_bits + 1``: a step saturated to this signed width moves every delay as the exact one."""
        return self._build.spec.stored_delay_bits + 1

    def _subtracts(self, final):
        """Whether a multiply step subtracts ``eps``: the last, for the sign bit of ``S`` (two's complement)."""
        return final

    def _saturate_step(self, value, bits):
        """``value`` saturated to ``bits`` signed: its high bits all equal (it fits), or the limit."""
        top = value[bits - 1:]
        sign = value[-1]
        fits = ~(top ^ sign.replicate(len(top))).any()
        return Mux(fits, value[:bits].as_signed(), Mux(sign, -(1 << (bits - 1)), (1 << (bits - 1)) - 1))

    def _round(self, last_out):
        """The rounding of ``rshift_round``: the last bit shifted out (``k = 0``: none shifted, 0)."""
        return last_out

    def elaborate(self, platform):
        s = self._build.spec
        lanes = self._build.lanes
        m = Module()

        # -- rows: two multipliers per lane, the lane adder tree, the sum -------------
        # (registers without reset, so that the synthesis packs them into the DSPs; with lanes
        # the products keep their reset: Yosys' ice40_dsp would give a product register to two
        # DSPs at once, the pipeline register of its own and the adder input of the next lane's)
        scaled = [Signal(signed(s.signal_bits + s.psi_bits), name=f"scaled_{l}", reset_less=True)
                  for l in range(lanes)]
        weight_1 = [Signal(signed(s.weight_bits), name=f"weight_1_{l}", reset_less=True) for l in range(lanes)]
        level = [Signal(signed(len(scaled[0]) + s.weight_bits), name=f"product_{l}", reset_less=lanes == 1)
                 for l in range(lanes)]
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
        total = Signal(signed(self.acc_bits), reset_less=True)
        with m.If(self.clear | valid):      # clear or accumulate: a DSP accumulator with P = 1
            m.d.sync += total.eq(Mux(self.clear, 0, total + level[0]))
        m.d.comb += self.sum.eq(total)

        # -- finish: S eps one bit of S a cycle, then the rounding shift one bit a cycle --
        W, E, D = s.trace_bits, self.acc_bits, s.stored_delay_bits
        low = Signal(E)                      # S, shifting out; the product's low bits shifting in
        high = Signal(signed(W + 1))         # the product's high part
        factor = Signal(signed(W))           # eps
        delay = Signal(unsigned(D))
        shift = Signal(6)
        count = Signal(range(max(E, 64)))
        multiplying, shifting = Signal(), Signal()
        last_out = Signal()                  # the last bit shifted out: the rounding
        idle = ~multiplying & ~shifting

        # one step: high + (bit ? +-eps : 0), then {high, low} >> 1 (the sign bit of S subtracts)
        bit = multiplying & low[0]
        final = count == 0
        negate = self._subtracts(final)
        addend = Signal(W)                   # eps, its complement (the sign bit of S), or 0
        m.d.comb += addend.eq(Mux(bit, factor.as_unsigned() ^ negate.replicate(W), 0))
        carry = bit & negate
        stepped = (Cat(carry, high, high[-1]) + Cat(carry, addend, addend[-1], addend[-1]))[1:W + 3]
        stepped = stepped.as_signed()        # high + addend + carry, W + 2 bits

        with m.If(idle & self.finish_en):
            m.d.sync += [low.eq(total), high.eq(0), factor.eq(self.trace), delay.eq(self.delay),
                         shift.eq(self.shift), count.eq(E - 1), multiplying.eq(1), last_out.eq(0)]
        with m.If(multiplying | (shifting & (count != 0))):
            m.d.sync += [high.eq(stepped[1:]), low.eq(Cat(low[1:], stepped[0])), count.eq(count - 1)]
        with m.If(multiplying & final):
            m.d.sync += [multiplying.eq(0), shifting.eq(1), count.eq(shift)]
        with m.If(shifting & (count != 0)):
            m.d.sync += last_out.eq(low[0])

        # the result: d - (q + round), q saturated to D + 1 bits, clamped
        product = Cat(low, high).as_signed()            # (S eps) >> k, exact
        narrow = Signal(signed(D + 1))
        m.d.comb += narrow.eq(self._saturate_step(product, self.step_bits))
        # d - narrow - round = d + ~narrow + (1 - round): one adder (D + 2 bits, exact)
        keep = ~self._round(last_out)
        moved = (Cat(keep, delay, Const(0, 2)) + Cat(keep, ~narrow, ~narrow[-1]))[1:D + 3].as_signed()
        done = shifting & (count == 0)
        m.d.sync += self.result_valid.eq(done)
        with m.If(done):
            m.d.sync += [self.result_delay.eq(clamp(moved, 0, s.delay_max)), shifting.eq(0)]
        return m
