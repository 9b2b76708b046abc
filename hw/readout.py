"""The non-firing leaky readout layer: :func:`delrec.arith.readout_update` for ``K`` units."""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from delrec.arith import CoreSpec

from .fixed import decay, saturate

__all__ = ["Readout"]


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
    writes, ``busy`` stays high until everything is written):

    ``accumulate`` with ``neuron = j``
        ``R_k += w_out[k, j]`` for every ``k``: ``K + 1`` cycles, a two-stage
        pipelined read-modify-write (``currents`` reads are transparent to its
        writes, so back-to-back commands are safe).
    ``update``
        :func:`delrec.arith.readout_update` for every ``k``, then ``R_k = 0``:
        ``K + 1`` cycles.
    ``clear``
        ``R = V = score = 0``: ``K`` cycles.

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
    """

    def __init__(self, neurons: int, classes: int, spec: CoreSpec, leak_bits: int):
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

        m.submodules.weights = weights = Memory(shape=signed(spec.weight_bits), depth=N * K, init=[])
        m.submodules.biases = biases = Memory(shape=signed(spec.readout_bits), depth=K, init=[])
        m.submodules.currents = currents = Memory(shape=signed(spec.acc_bits), depth=K, init=[])
        m.submodules.values = values = Memory(shape=signed(spec.readout_bits), depth=K, init=[])
        m.submodules.scores = scores = Memory(shape=signed(spec.score_bits), depth=K, init=[])

        weight_w = weights.write_port()
        weight_r = weights.read_port()
        bias_w = biases.write_port()
        bias_r = biases.read_port()
        current_w = currents.write_port()
        current_r = currents.read_port(transparent_for=(current_w,))
        value_w = values.write_port()
        value_r = values.read_port()
        score_w = scores.write_port()
        score_r = scores.read_port()

        m.d.comb += [
            weight_w.en.eq(self.weight_write_en),
            weight_w.addr.eq(self.weight_write_addr),
            weight_w.data.eq(self.weight_write_data),
            bias_w.en.eq(self.bias_write_en),
            bias_w.addr.eq(self.bias_write_addr),
            bias_w.data.eq(self.bias_write_data),
        ]

        unit = Signal(range(K + 1))          # stage 0: the unit whose reads are issued
        weight_base = Signal(range(N * K + 1))
        accumulating = Signal()              # stage 1 flags and unit
        updating = Signal()
        unit_1 = Signal.like(unit)
        read_score_1 = Signal()

        m.d.sync += [accumulating.eq(0), updating.eq(0)]
        m.d.comb += [
            weight_r.addr.eq(weight_base + unit),
            current_r.addr.eq(unit),
            bias_r.addr.eq(unit),
            value_r.addr.eq(unit),
            score_r.addr.eq(unit),
        ]

        with m.FSM(name="readout_fsm") as fsm:
            with m.State("IDLE"):
                m.d.sync += unit.eq(0)
                with m.If(self.read_en):
                    m.d.comb += [value_r.addr.eq(self.read_addr), score_r.addr.eq(self.read_addr)]
                    m.d.sync += read_score_1.eq(self.read_score)
                with m.If(self.accumulate):
                    m.d.sync += weight_base.eq(self.neuron * K)
                    m.next = "ACCUMULATE"
                with m.Elif(self.update):
                    m.next = "UPDATE"
                with m.Elif(self.clear):
                    m.next = "CLEAR"
            with m.State("ACCUMULATE"):
                m.d.sync += [accumulating.eq(1), unit_1.eq(unit), unit.eq(unit + 1)]
                with m.If(unit == K - 1):
                    m.next = "IDLE"
            with m.State("UPDATE"):
                m.d.sync += [updating.eq(1), unit_1.eq(unit), unit.eq(unit + 1)]
                with m.If(unit == K - 1):
                    m.next = "IDLE"
            with m.State("CLEAR"):
                m.d.comb += [
                    current_w.en.eq(1), current_w.addr.eq(unit), current_w.data.eq(0),
                    value_w.en.eq(1), value_w.addr.eq(unit), value_w.data.eq(0),
                    score_w.en.eq(1), score_w.addr.eq(unit), score_w.data.eq(0),
                ]
                m.d.sync += unit.eq(unit + 1)
                with m.If(unit == K - 1):
                    m.next = "IDLE"

        # Stage 1 of an accumulation: R_k += w_out[k, j] (wrapping, exact by the compiler's checks).
        with m.If(accumulating):
            m.d.comb += [
                current_w.en.eq(1),
                current_w.addr.eq(unit_1),
                current_w.data.eq((current_r.data + weight_r.data)[:spec.acc_bits]),
            ]
        # Stage 1 of an update: V_k, score_k from R_k, then R_k = 0.
        value_next = saturate(decay(value_r.data, self.leak, spec.leak, spec.decay_bits)
                              + current_r.data + bias_r.data, spec.readout_bits)
        score_next = saturate(score_r.data + value_next, spec.score_bits)
        with m.If(updating):
            m.d.comb += [
                current_w.en.eq(1), current_w.addr.eq(unit_1), current_w.data.eq(0),
                value_w.en.eq(1), value_w.addr.eq(unit_1), value_w.data.eq(value_next),
                score_w.en.eq(1), score_w.addr.eq(unit_1), score_w.data.eq(score_next),
            ]

        m.d.comb += [
            self.ready.eq(fsm.ongoing("IDLE")),
            self.busy.eq(~fsm.ongoing("IDLE") | accumulating | updating),
            self.read_data.eq(Mux(read_score_1, score_r.data.as_unsigned(),
                                  value_r.data.as_unsigned())),
        ]
        return m
