"""The non-firing leaky readout layer: :func:`delrec.arith.readout_update` for ``K`` units."""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from delrec.arith import CoreSpec

from .banked import BankedMemory
from .fixed import check_bank_bits, decay, delay_line, saturate

__all__ = ["Readout", "UPDATE_STAGES"]

#: Pipeline stages of the readout update after its reads.
UPDATE_STAGES = 5


def _bits(count: int) -> int:
    return max(1, (count - 1).bit_length())


class Readout(wiring.Component):
    """``K`` leaky integrators of the hidden spikes, with their running scores.

    Memories (one read and one write port each, synchronous reads):
    ``weights`` ``N*K x weight_bits`` (``w_out[k, j]`` at ``j*K + k``),
    ``biases`` ``K x readout_bits``, ``currents`` ``K x acc_bits``
    (``R_k`` of the step being computed), ``values`` ``K x readout_bits``
    (``V_k``) and ``scores`` ``K x score_bits``.

    Commands (one-cycle strobes, taken only while ``ready`` is high; ``ready``
    rises again while the last pipeline stage of an accumulation still
    writes, but only once an update has written everything; ``busy`` stays
    high until everything is written):

    ``accumulate`` with ``neuron = j``
        ``R_k += w_out[k, j]`` for every ``k``: ``K + 3`` cycles, a
        four-stage pipeline (the weight's read; its word registered (per bank);
        the chosen weight registered and the read of ``R_k``; the sum written
        back; ``currents`` reads are transparent to its writes, so
        back-to-back commands are safe; an update or a clear waits for the
        last writes).
    ``update``
        :func:`delrec.arith.readout_update` for every ``k``, then ``R_k = 0``:
        ``K + UPDATE_STAGES`` cycles, a pipeline of reads and
        :data:`UPDATE_STAGES` stages (the leaked value and ``R_k + b_k``;
        their sum; the saturated value; its sum with the score; the saturated
        score and the writes), so that no path holds more than one adder, one
        saturation or the multiplier; ``ready`` stays low for all of them.
    ``clear``
        ``R = V = score = 0``: ``K`` cycles (one more when an accumulation
        still writes).

    Host access: weight and bias writes at any time the unit is idle;
    ``read_en`` with ``read_addr = k`` returns ``V_k`` (``read_score = 0``) or
    ``score_k`` (``read_score = 1``) as raw bits on ``read_data`` one cycle later.

    Parameters
    ----------
    neurons, classes : int
        ``N`` and ``K``.
    spec : CoreSpec
    leak_bits : int
        Width of the ``leak`` input.
    weight_bank_bits : int, optional
        ``weights`` in banks of at most this many bits, each bank's word
        registered before the bank is chosen (see
        :class:`~delrec.hw.core.InferenceCore`); same behaviour and cycles.
    """

    def __init__(self, neurons: int, classes: int, spec: CoreSpec, leak_bits: int, *,
                 weight_bank_bits: int | None = None):
        check_bank_bits(weight_bank_bits)
        self._weight_bank_bits = weight_bank_bits
        self._neurons = neurons
        self._classes = classes
        self._spec = spec
        super().__init__({
            "weight_write_en": In(1),
            "weight_write_addr": In(unsigned(_bits(neurons * classes))),
            "weight_write_data": In(signed(spec.weight_bits)),
            "bias_write_en": In(1),
            "bias_write_addr": In(unsigned(_bits(classes))),
            "bias_write_data": In(signed(spec.readout_bits)),
            "leak": In(unsigned(leak_bits)),
            "accumulate": In(1),
            "neuron": In(unsigned(_bits(neurons))),
            "update": In(1),
            "clear": In(1),
            "ready": Out(1),
            "busy": Out(1),
            "read_en": In(1),
            "read_addr": In(unsigned(_bits(classes))),
            "read_score": In(1),
            "read_data": Out(unsigned(spec.score_bits)),
        })

    def elaborate(self, platform):
        spec = self._spec
        N, K = self._neurons, self._classes
        m = Module()

        m.submodules.biases = biases = Memory(shape=signed(spec.readout_bits), depth=K, init=[])
        m.submodules.currents = currents = Memory(shape=signed(spec.acc_bits), depth=K, init=[])
        m.submodules.values = values = Memory(shape=signed(spec.readout_bits), depth=K, init=[])
        m.submodules.scores = scores = Memory(shape=signed(spec.score_bits), depth=K, init=[])

        bias_w = biases.write_port()
        bias_r = biases.read_port()
        current_w = currents.write_port()
        current_r = currents.read_port(transparent_for=(current_w,))
        value_w = values.write_port()
        value_r = values.read_port()
        score_w = scores.write_port()
        score_r = scores.read_port()

        m.d.comb += [
            bias_w.en.eq(self.bias_write_en),
            bias_w.addr.eq(self.bias_write_addr),
            bias_w.data.eq(self.bias_write_data),
        ]

        unit = Signal(range(K + 1))          # stage 0: the unit whose reads are issued
        weight_addr = Signal(range(N * K))   # w_out[unit, j] of the accumulation: a counter, so
                                             # that the block RAM's address comes from a register
        accumulating = Signal()              # stage 1 flags and unit
        updating = Signal()
        unit_1 = Signal.like(unit)
        read_score_1 = Signal()
        # the later stages of an update: updates[n], units[n] are stage n + 2 (see below)
        updates = [Signal(name=f"updating_{n + 2}") for n in range(UPDATE_STAGES - 1)]
        units = [Signal.like(unit, name=f"unit_{n + 2}") for n in range(UPDATE_STAGES - 1)]
        unit_2 = units[0]

        # w_out, read through BankedMemory.LATENCY = 3 cycles: the weight of stage 3
        m.submodules.weights = weights = BankedMemory(shape=signed(spec.weight_bits), depth=N * K,
                                                      bank_bits=self._weight_bank_bits)
        m.d.comb += [
            weights.write_en.eq(self.weight_write_en),
            weights.write_addr.eq(self.weight_write_addr),
            weights.write_data.eq(self.weight_write_data),
            weights.read_addr.eq(weight_addr),
            weights.read_en.eq(1),
        ]
        weight_3 = weights.read_data
        accumulating_2, accumulating_3 = Signal(), Signal()
        accumulate_tail = Signal()                    # stages 2 and 3 of an accumulation
        m.d.sync += [accumulating_2.eq(accumulating), accumulating_3.eq(accumulating_2)]
        m.d.comb += accumulate_tail.eq(accumulating_2 | accumulating_3)
        m.d.sync += [accumulating.eq(0), updating.eq(0)]
        m.d.sync += [stage.eq(prev) for stage, prev in zip(updates, [updating] + updates)]
        m.d.sync += [stage.eq(prev) for stage, prev in zip(units, [unit_1] + units)]
        m.d.comb += [
            current_r.addr.eq(Mux(accumulating_2, unit_2, unit)),
            bias_r.addr.eq(unit),
            value_r.addr.eq(unit),
            score_r.addr.eq(unit),
        ]

        with m.FSM(name="readout_fsm") as fsm:
            with m.State("IDLE"):
                # the address of w_out[0, neuron] is registered whether or not a command comes:
                # the command strobe never gates the product
                m.d.sync += [unit.eq(0), weight_addr.eq(self.neuron * K)]
                # idle, the value and score memories read read_addr (the address never waits for
                # read_en, which only picks the result)
                m.d.comb += [value_r.addr.eq(self.read_addr), score_r.addr.eq(self.read_addr)]
                with m.If(self.read_en):
                    m.d.sync += read_score_1.eq(self.read_score)
                with m.If(self.accumulate):
                    m.next = "ACCUMULATE"
                with m.Elif(self.update):
                    m.next = "UPDATE"
                with m.Elif(self.clear):
                    m.next = "CLEAR"
            with m.State("ACCUMULATE"):
                m.d.sync += [accumulating.eq(1), unit_1.eq(unit), unit.eq(unit + 1),
                             weight_addr.eq(weight_addr + 1)]
                with m.If(unit == K - 1):
                    m.next = "IDLE"
            with m.State("UPDATE"):
                with m.If(~accumulate_tail):   # an accumulation's reads and writes go first
                    m.d.sync += [updating.eq(1), unit_1.eq(unit), unit.eq(unit + 1)]
                    with m.If(unit == K - 1):
                        m.next = "IDLE"
            with m.State("CLEAR"):
                with m.If(~accumulate_tail):   # an accumulation's last write goes first
                    m.d.comb += [
                        current_w.en.eq(1), current_w.addr.eq(unit), current_w.data.eq(0),
                        value_w.en.eq(1), value_w.addr.eq(unit), value_w.data.eq(0),
                        score_w.en.eq(1), score_w.addr.eq(unit), score_w.data.eq(0),
                    ]
                    m.d.sync += unit.eq(unit + 1)
                    with m.If(unit == K - 1):
                        m.next = "IDLE"

        # Stage 3 of an accumulation: R_k += w_out[k, j] (wrapping, exact by the compiler's checks).
        with m.If(accumulating_3):
            m.d.comb += [
                current_w.en.eq(1),
                current_w.addr.eq(units[1]),
                current_w.data.eq((current_r.data + weight_3)[:spec.acc_bits]),
            ]
        # An update, one adder or the multiplier per stage: stage 1 leaks V_k and adds
        # R_k + b_k; stage 2 sums them; stage 3 saturates V_k; stage 4 adds it to score_k;
        # stage 5 saturates the score and writes V_k, score_k and R_k = 0.
        leaked = Signal(signed(spec.readout_bits))
        base = Signal(signed(max(spec.acc_bits, spec.readout_bits) + 1))
        value_sum = Signal(signed(len(base) + 1))
        value = Signal(signed(spec.readout_bits))
        value_out = Signal(signed(spec.readout_bits))
        score_sum = Signal(signed(spec.score_bits + 1))
        scores_in = delay_line(m, score_r.data, 3, "score_in")   # the score beside stages 2-4
        m.d.sync += [
            leaked.eq(decay(value_r.data, self.leak, spec.leak, spec.decay_bits)),
            base.eq(current_r.data + bias_r.data),
            value_sum.eq(leaked + base),
            value.eq(saturate(value_sum, spec.readout_bits)),
            value_out.eq(value),
            score_sum.eq(scores_in[-1] + value),
        ]
        with m.If(updates[-1]):
            m.d.comb += [
                current_w.en.eq(1), current_w.addr.eq(units[-1]), current_w.data.eq(0),
                value_w.en.eq(1), value_w.addr.eq(units[-1]), value_w.data.eq(value_out),
                score_w.en.eq(1), score_w.addr.eq(units[-1]),
                score_w.data.eq(saturate(score_sum, spec.score_bits)),
            ]

        m.d.comb += [
            self.ready.eq(fsm.ongoing("IDLE") & ~updating & ~Cat(*updates).any()),
            self.busy.eq(~fsm.ongoing("IDLE") | accumulating | accumulate_tail
                         | updating | Cat(*updates).any()),
            self.read_data.eq(Mux(read_score_1, score_r.data.as_unsigned(),
                                  value_r.data.as_unsigned())),
        ]
        return m
