"""The non-firing leaky readout layer: :func:`delrec.arith.readout_update` for ``K`` units, and its learning."""

from __future__ import annotations

import enum

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from delrec.arith import CoreSpec

from .banked import BankedMemory
from .fixed import check_bank_bits, decay, delay_line, forward_value, saturate
from .readout_learning import BROADCAST_STAGES, ERRORS_STAGES, LEARN_STAGES, ReadoutLearning

__all__ = ["Readout", "ReadWhat", "UPDATE_STAGES", "ERRORS_STAGES", "BROADCAST_STAGES", "LEARN_STAGES"]

#: Pipeline stages of the readout update after its reads.
UPDATE_STAGES = 5


class ReadWhat(enum.IntEnum):
    """What a host read (``read_what``) returns."""
    VALUE = 0    #: ``V_k`` at ``read_addr = k``
    SCORE = 1    #: ``score_k`` at ``read_addr = k``
    WEIGHT = 2   #: the stored ``w_out[k, j]`` at ``read_addr = j*K + k``
    BIAS = 3     #: the stored ``b_k`` at ``read_addr = k``


def _bits(count: int) -> int:
    return max(1, (count - 1).bit_length())


class Readout(wiring.Component):
    """``K`` leaky integrators of the hidden spikes, with their running scores, optionally learning.

    Memories (one read and one write port each, synchronous reads):
    ``weights`` ``N*K x weight_store_bits`` (the learning copies of
    ``w_out[k, j]`` at ``j*K + k``; the forward pass adds their top
    ``weight_bits``, :func:`~delrec.arith.forward_value`), ``biases`` ``K x
    readout_bias_store_bits`` (likewise), ``currents`` ``K x acc_bits``
    (``R_k`` of the step being computed), ``values`` ``K x readout_bits``
    (``V_k``) and ``scores`` ``K x score_bits``; with ``learning``, those of
    :class:`~delrec.hw.readout_learning.ReadoutLearning` (``err_k``, ``e_k``).

    Commands (one-cycle strobes, taken only while ``ready`` is high; a
    strobe's *cycles* are those ``busy`` stays high after it, of which
    ``ready`` is low for the number given; ``busy`` stays high until
    everything is written):

    ``accumulate`` with ``neuron = j``
        ``R_k += forward_value(w_out[k, j])`` for every ``k``: ``K + 3``
        cycles, ``ready`` low ``K``: a four-stage pipeline (the weight's read;
        its word registered (per bank); the chosen weight registered and the
        read of ``R_k``; the sum written back; ``currents`` reads are
        transparent to its writes, so back-to-back commands are safe; an
        update or a clear waits for the last writes). It issues nothing while
        a ``learn`` or ``learn_bias`` still writes (``broadcast`` likewise).
    ``update`` (``count`` steady until ``busy`` falls)
        :func:`delrec.arith.readout_update` for every ``k`` with the forward
        bias and ``counts = count`` (``count = 0``: the score stays), then
        ``R_k = 0``: ``K + UPDATE_STAGES`` cycles, ``ready`` low all of them: a
        pipeline of reads and :data:`UPDATE_STAGES` stages (the leaked value
        and ``R_k + b_k``; their sum; the saturated value; its sum with the
        score; the saturated score and the writes), so that no path holds more
        than one adder, one saturation or the multiplier. It waits for the
        last writes of an accumulation, a ``learn`` or a ``learn_bias``.
    ``clear``
        ``R = V = score = 0``: ``K`` cycles (one more when an accumulation
        still writes).

    Learning commands (``learning=True``; ``label``, ``target``,
    ``error_shift`` and ``shift`` steady while one runs; element ``k`` of a
    command is issued in its ``k + 1``-th cycle):

    ``errors`` (after an ``update`` has finished)
        ``err_k = V_k - target [k = label]`` (exact; ``label >= K``: no
        label) and ``e_k = step_error(err_k, error_shift, signal_bits)``, kept
        for the commands below: ``K + 4`` cycles, ``ready`` low all of them
        (``V_k``'s read; ``[k = label]`` and ``err_k``, written; the shift and
        the rounding of ``rshift_round``; the clamp and the write of ``e_k``).
    ``broadcast``
        ``L_i = broadcast_signal(sum_k e_k feedback_weight(w_out[k, i]))`` for
        ``i = 0 .. N-1``: ``N*K + 7`` cycles, ``ready`` low ``N*K`` (it has
        read every weight by then, so ``learn`` may follow at once; the
        weight's and ``e_k``'s reads, the product, the sum over ``k``, the
        rounding and the saturation into the output registers).
        ``signal_valid`` is high for one cycle ``(i + 1) K + 7`` cycles after
        the strobe's, with ``signal_neuron = i`` and ``signal_value = L_i``
        (no backpressure; neuron ``N - 1``'s pulse is in the last busy cycle).
    ``learn`` with ``neuron = j``
        ``w_out[k, j] = weight_update(w_out[k, j], parameter_step(err_k,
        shift), weight_store_bits)`` for every ``k``: ``K + 4`` cycles,
        ``ready`` low ``K`` (the weight's and ``err_k``'s reads; the shift and
        the rounding of the step beside the weight's read; ``w - step``; the
        saturation and the write): back-to-back learns of different neurons
        take ``K + 1`` cycles each. Two learns of one neuron need ``busy`` low
        between them (within a step each neuron that fired is learned once).
    ``learn_bias``
        ``b_out[k]`` likewise (``readout_bias_store_bits``): ``K + 4`` cycles,
        ``ready`` low ``K``.

    Host access while ``busy`` is low: weight and bias writes of the stored
    (learning) copies; ``read_en`` with ``read_what`` (:class:`ReadWhat`)
    and ``read_addr`` puts the raw bits of the element, zero-extended, on
    ``read_data`` with a one-cycle ``read_valid`` pulse one cycle later (a
    value, score or bias) or ``BankedMemory.LATENCY`` cycles later (a
    weight, through the weight memory's read port); ``read_data`` then holds
    it until the next ``read_en``, which waits for ``read_valid``.

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
    learning : bool
        Build the learning commands and their ports (``errors``,
        ``broadcast``, ``learn``, ``learn_bias``, ``label``, ``target``,
        ``error_shift``, ``shift``, ``signal_valid``, ``signal_neuron``,
        ``signal_value``); the other commands keep their cycles.
    """

    def __init__(self, neurons: int, classes: int, spec: CoreSpec, leak_bits: int, *,
                 weight_bank_bits: int | None = None, learning: bool = False):
        for name, value in (("neurons", neurons), ("classes", classes), ("leak_bits", leak_bits)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"Readout {name} must be a positive integer, not {value!r}")
        if not isinstance(spec, CoreSpec):
            raise ValueError(f"Readout spec must be a CoreSpec, not {spec!r}")
        if not isinstance(learning, bool):
            raise ValueError(f"Readout learning must be true or false, not {learning!r}")
        check_bank_bits(weight_bank_bits)
        self._weight_bank_bits = weight_bank_bits
        self._neurons, self._classes, self._spec, self._learning = neurons, classes, spec, learning
        members = {
            "weight_write_en": In(1),
            "weight_write_addr": In(unsigned(_bits(neurons * classes))),
            "weight_write_data": In(signed(spec.weight_store_bits)),
            "bias_write_en": In(1),
            "bias_write_addr": In(unsigned(_bits(classes))),
            "bias_write_data": In(signed(spec.readout_bias_store_bits)),
            "leak": In(unsigned(leak_bits)),
            "accumulate": In(1),
            "neuron": In(unsigned(_bits(neurons))),
            "update": In(1),
            "count": In(1),
            "clear": In(1),
            "ready": Out(1),
            "busy": Out(1),
            "read_en": In(1),
            "read_addr": In(unsigned(_bits(neurons * classes))),
            "read_what": In(2),
            "read_valid": Out(1),
            "read_data": Out(unsigned(max(spec.score_bits, spec.weight_store_bits,
                                          spec.readout_bias_store_bits))),
        }
        if learning:
            members.update({
                "errors": In(1),
                "broadcast": In(1),
                "learn": In(1),
                "learn_bias": In(1),
                "label": In(unsigned(classes.bit_length())),
                "target": In(signed(spec.readout_bits)),
                "error_shift": In(unsigned(6)),
                "shift": In(unsigned(6)),
                "signal_valid": Out(1),
                "signal_neuron": Out(unsigned(_bits(neurons))),
                "signal_value": Out(signed(spec.signal_bits)),
            })
        super().__init__(members)

    def elaborate(self, platform):
        spec = self._spec
        N, K = self._neurons, self._classes
        m = Module()

        m.submodules.biases = biases = Memory(shape=signed(spec.readout_bias_store_bits), depth=K, init=[])
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

        unit = Signal(range(K + 1))          # stage 0: the unit whose reads are issued
        weight_addr = Signal(range(N * K))   # w_out[unit, j] of the accumulation: a counter, so
                                             # that the block RAM's address comes from a register
        accumulating = Signal()              # stage 1 flags and unit
        updating = Signal()
        unit_1 = Signal.like(unit)
        # the later stages of an update: updates[n], units[n] are stage n + 2 (see below)
        updates = [Signal(name=f"updating_{n + 2}") for n in range(UPDATE_STAGES - 1)]
        units = [Signal.like(unit, name=f"unit_{n + 2}") for n in range(UPDATE_STAGES - 1)]
        unit_2 = units[0]

        # w_out, read through BankedMemory.LATENCY = 3 cycles: the weight of stage 3
        m.submodules.weights = weights = BankedMemory(shape=signed(spec.weight_store_bits), depth=N * K,
                                                      bank_bits=self._weight_bank_bits)
        m.d.comb += [weights.read_addr.eq(weight_addr), weights.read_en.eq(1)]
        weight_3 = forward_value(weights.read_data, spec.weight_frac_bits)
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

        learning = None
        learn_writing = Const(0)                      # a learn's weight or bias writes in flight
        broadcast_neuron = Signal(range(N))           # i of the broadcast element issued
        if self._learning:
            m.submodules.learning = learning = ReadoutLearning(N, K, spec)
            learn_writing = learning.writing
            m.d.comb += [
                learning.unit.eq(unit), learning.neuron.eq(broadcast_neuron),
                learning.weight_addr.eq(weight_addr), learning.value.eq(value_r.data),
                learning.weight.eq(weights.read_data), learning.bias.eq(bias_r.data),
                self.signal_valid.eq(learning.signal_valid), self.signal_neuron.eq(learning.signal_neuron),
                self.signal_value.eq(learning.signal_value),
            ]
            m.d.comb += [getattr(learning, name).eq(getattr(self, name))
                         for name in ("label", "target", "error_shift", "shift")]
        self._write_ports(m, weights, bias_w, learning)
        commands = [("accumulate", "ACCUMULATE"), ("update", "UPDATE"), ("clear", "CLEAR")]
        if learning is not None:
            commands += [("errors", "ERRORS"), ("broadcast", "BROADCAST"), ("learn", "LEARN"),
                         ("learn_bias", "LEARN_BIAS")]

        with m.FSM(name="readout_fsm") as fsm:
            with m.State("IDLE"):
                # the address of w_out[0, neuron] is registered whether or not a command comes:
                # the command strobe never gates the product
                m.d.sync += [unit.eq(0), weight_addr.eq(self.neuron * K), broadcast_neuron.eq(0)]
                # idle, the memories read read_addr (the address never waits for read_en, which
                # only picks the result)
                m.d.comb += [value_r.addr.eq(self.read_addr), score_r.addr.eq(self.read_addr),
                             bias_r.addr.eq(self.read_addr), weights.read_addr.eq(self.read_addr)]
                for n, (strobe, state) in enumerate(commands):
                    with (m.If if n == 0 else m.Elif)(getattr(self, strobe)):
                        m.next = state
                        if strobe == "broadcast":   # it reads every weight, from address 0
                            m.d.sync += weight_addr.eq(0)
            with m.State("ACCUMULATE"):
                with m.If(~learn_writing):   # a learn's weights are written first
                    m.d.sync += [accumulating.eq(1), unit_1.eq(unit), unit.eq(unit + 1),
                                 weight_addr.eq(weight_addr + 1)]
                    with m.If(unit == K - 1):
                        m.next = "IDLE"
            with m.State("UPDATE"):
                with m.If(~accumulate_tail & ~learn_writing):   # the last writes go first
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
            if learning is not None:
                self._learning_states(m, learning, unit, weight_addr, broadcast_neuron, learn_writing)

        # Stage 3 of an accumulation: R_k += w_out[k, j] (wrapping, exact by the compiler's checks).
        with m.If(accumulating_3):
            m.d.comb += [
                current_w.en.eq(1),
                current_w.addr.eq(units[1]),
                current_w.data.eq((current_r.data + weight_3)[:spec.acc_bits]),
            ]
        # An update, one adder or the multiplier per stage: stage 1 leaks V_k and adds
        # R_k + b_k; stage 2 sums them; stage 3 saturates V_k; stage 4 adds it to score_k;
        # stage 5 saturates the score and writes V_k, score_k (when the step counts) and R_k = 0.
        leaked = Signal(signed(spec.readout_bits))
        bias = forward_value(bias_r.data, spec.weight_frac_bits)
        base = Signal(signed(max(spec.acc_bits, spec.readout_bits) + 1))
        value_sum = Signal(signed(len(base) + 1))
        value = Signal(signed(spec.readout_bits))
        value_out = Signal(signed(spec.readout_bits))
        score_sum = Signal(signed(spec.score_bits + 1))
        scores_in = delay_line(m, score_r.data, 3, "score_in")   # the score beside stages 2-4
        m.d.sync += [
            leaked.eq(decay(value_r.data, self.leak, spec.leak, spec.decay_bits)),
            base.eq(current_r.data + bias),
            value_sum.eq(leaked + base),
            value.eq(saturate(value_sum, spec.readout_bits)),
            value_out.eq(value),
            score_sum.eq(scores_in[-1] + value),
        ]
        with m.If(updates[-1]):
            m.d.comb += [
                current_w.en.eq(1), current_w.addr.eq(units[-1]), current_w.data.eq(0),
                value_w.en.eq(1), value_w.addr.eq(units[-1]), value_w.data.eq(value_out),
                score_w.en.eq(self.count), score_w.addr.eq(units[-1]),
                score_w.data.eq(saturate(score_sum, spec.score_bits)),
            ]

        idle = fsm.ongoing("IDLE")
        learning_busy = learning.busy if learning is not None else Const(0)
        errors_busy = learning.errors_busy if learning is not None else Const(0)
        m.d.comb += [
            self.ready.eq(idle & ~updating & ~Cat(*updates).any() & ~errors_busy),
            self.busy.eq(~idle | accumulating | accumulate_tail | updating | Cat(*updates).any()
                         | learning_busy),
        ]
        self._host_reads(m, idle, value_r.data, score_r.data, bias_r.data, weights.read_data)
        return m

    def _write_ports(self, m, weights, bias_w, learning):
        """The weight and bias memories' write ports: the host's writes, or the learning writes."""
        for en, addr, data, name in ((weights.write_en, weights.write_addr, weights.write_data, "weight"),
                                     (bias_w.en, bias_w.addr, bias_w.data, "bias")):
            host = [getattr(self, f"{name}_write_{field}") for field in ("en", "addr", "data")]
            if learning is None:
                m.d.comb += [en.eq(host[0]), addr.eq(host[1]), data.eq(host[2])]
                continue
            learn = [getattr(learning, f"{name}_write_{field}") for field in ("en", "addr", "data")]
            m.d.comb += [en.eq(host[0] | learn[0]), addr.eq(Mux(learn[0], learn[1], host[1])),
                         data.eq(Mux(learn[0], learn[2], host[2]))]

    def _learning_states(self, m, learning, unit, weight_addr, broadcast_neuron, learn_writing):
        """The FSM states of the learning commands: one element issued per cycle."""
        N, K = self._neurons, self._classes
        for state, strobe in (("ERRORS", learning.errors), ("LEARN", learning.learn),
                              ("LEARN_BIAS", learning.learn_bias)):
            with m.State(state):
                m.d.comb += strobe.eq(1)
                m.d.sync += [unit.eq(unit + 1), weight_addr.eq(weight_addr + 1)]
                with m.If(unit == K - 1):
                    m.next = "IDLE"
        with m.State("BROADCAST"):
            with m.If(~learn_writing):   # a learn's weights are written first
                m.d.comb += learning.broadcast.eq(1)
                m.d.sync += [unit.eq(Mux(unit == K - 1, 0, unit + 1)), weight_addr.eq(weight_addr + 1)]
                with m.If(unit == K - 1):
                    m.d.sync += broadcast_neuron.eq(broadcast_neuron + 1)
                    with m.If(broadcast_neuron == N - 1):
                        m.next = "IDLE"

    def _host_reads(self, m, idle, value, score, bias, weight):
        """``read_data`` and ``read_valid``: the word read for ``read_en``, then held."""
        what = Signal(2)
        reading = Signal()                     # a value, score or bias read was issued a cycle ago
        weight_reading = delay_line(m, idle & self.read_en & (self.read_what == ReadWhat.WEIGHT),
                                    BankedMemory.LATENCY, "weight_reading")[-1]
        held = Signal.like(self.read_data)
        m.d.sync += [reading.eq(idle & self.read_en & (self.read_what != ReadWhat.WEIGHT)),
                     held.eq(self.read_data)]
        with m.If(self.read_en):
            m.d.sync += what.eq(self.read_what)
        live = Mux(weight_reading, weight.as_unsigned(),
                   Mux(what == ReadWhat.BIAS, bias.as_unsigned(),
                       Mux(what == ReadWhat.SCORE, score.as_unsigned(), value.as_unsigned())))
        m.d.comb += [self.read_valid.eq(reading | weight_reading),
                     self.read_data.eq(Mux(self.read_valid, live, held))]
