"""The non-firing leaky readout layer: :func:`delrec.arith.readout_update` for ``K`` units, and its learning."""

from __future__ import annotations

import enum

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from delrec.arith import CoreSpec

from .banked import BankedMemory
from .fixed import check_bank_bits, decay, delay_line, forward_value
from .readout_learning import BROADCAST_STAGES, ReadoutLearning, saturate

__all__ = ["Readout", "ReadWhat", "UPDATE_STAGES", "BROADCAST_STAGES", "WEIGHT_LATENCY",
           "weight_port_signature"]

#: Pipeline stages of the readout update after its reads.
UPDATE_STAGES = 5
#: Cycles from a weight read (its address and ``read_en``) to its word, inside or outside the readout.
WEIGHT_LATENCY = BankedMemory.LATENCY


class ReadWhat(enum.IntEnum):
    """What a host read (``read_what``) returns."""
    VALUE = 0    #: ``V_k`` at ``read_addr = k``
    SCORE = 1    #: ``score_k`` at ``read_addr = k``
    WEIGHT = 2   #: the stored ``w_out[k, j]`` at ``read_addr = j*K + k``
    BIAS = 3     #: the stored ``b_k`` at ``read_addr = k``


#: For yosys: no word is read and written in one cycle where the read's result is used, so no
#: logic is added around the block RAM to give such a read the old word (the RAM leaves it undefined).
_NO_RW_CHECK = {"no_rw_check": 1}


def _bits(count: int) -> int:
    return max(1, (count - 1).bit_length())


def weight_port_signature(neurons: int, classes: int, spec: CoreSpec) -> wiring.Signature:
    """The readout's port to a weight memory outside it (``Readout(..., weight_port=True)``).

    One address for reads and writes (a single-port memory: the iCE40
    SPRAM), as seen from the readout:

    ``addr`` : Out(``N*K`` words)
        The word ``j*K + k`` (``w_out[k, j]``) read or written this cycle.
    ``read_en`` : Out(1)
        Read ``addr`` this cycle: its word must be on ``read_data`` exactly
        :data:`WEIGHT_LATENCY` cycles later (a synchronous read whose word is
        registered twice, as :class:`~delrec.hw.banked.BankedMemory` does;
        ``read_data`` is not looked at in the other cycles). Never high with
        ``write_en``.
    ``read_data`` : In(``signed(weight_store_bits)``)
    ``write_en`` : Out(1)
        Write ``write_data`` at ``addr`` at the end of this cycle (a read of
        it from the next cycle on returns it).
    ``write_data`` : Out(``signed(weight_store_bits)``)
    """
    return wiring.Signature({
        "addr": Out(unsigned(_bits(neurons * classes))),
        "read_en": Out(1),
        "read_data": In(signed(spec.weight_store_bits)),
        "write_en": Out(1),
        "write_data": Out(signed(spec.weight_store_bits)),
    })


class Readout(wiring.Component):
    """``K`` leaky integrators of the hidden spikes, with their running scores, optionally learning.

    Memories (one read and one write port each, synchronous reads; no word is
    read and written in one cycle where the read is used, so that the block
    RAMs need no collision logic): ``weights`` ``N*K x weight_store_bits``
    (the learning copies of ``w_out[k, j]`` at ``j*K + k``; the forward pass
    adds their top ``weight_bits``, :func:`~delrec.arith.forward_value`;
    with ``weight_port`` outside the readout, see below), ``biases`` ``K x
    readout_bias_store_bits`` (likewise), ``currents`` ``K x acc_bits``
    (``R_k`` of the step being computed), ``values`` ``K x readout_bits``
    (``V_k``) and ``scores`` ``K x score_bits``; with ``learning``, those of
    :class:`~delrec.hw.readout_learning.ReadoutLearning` (``e_k`` and the
    steps ``parameter_step(err_k, shift)``).

    Commands (one-cycle strobes, taken only while ``ready`` is high; a
    strobe's *cycles* are those ``busy`` stays high after it, of which
    ``ready`` is low for the number given; ``busy`` stays high until
    everything is written):

    ``accumulate`` with ``neuron = j``
        ``R_k += forward_value(w_out[k, j])`` for every ``k``: ``K + 3``
        cycles, ``ready`` low ``K``: a four-stage pipeline (the weight's read;
        its word registered (per bank); the chosen weight registered and the
        read of ``R_k``; the sum written back: the next accumulation reads
        ``R_k`` after that write, so back-to-back commands are safe; an
        update or a clear waits for the last writes).
    ``update`` (``count`` steady until ``busy`` falls)
        :func:`delrec.arith.readout_update` for every ``k`` with the forward
        bias and ``counts = count`` (``count = 0``: the score stays), then
        ``R_k = 0``: ``K + UPDATE_STAGES`` cycles, ``ready`` low all of them: a
        pipeline of reads and :data:`UPDATE_STAGES` stages (the leaked value
        and ``R_k + b_k``; their sum; the saturated value, and the score's
        read; the value's write and its sum with the score; the saturated
        score and the writes of the score and ``R_k``), so that no path
        holds more than one adder, one saturation or the multiplier. It
        waits for the last writes of an accumulation.
    ``clear``
        ``R = V = score = 0``: ``K`` cycles (one more when an accumulation
        still writes).

    Learning commands (``learning=True``; ``label``, ``target``,
    ``error_shift`` and ``shift`` steady while an ``errors`` runs: it computes
    the steps of the ``learn`` and ``learn_bias`` commands after it, with the
    ``shift`` of that time; a ``shift`` changed later takes effect at the
    next ``errors``). Each keeps ``ready`` low until its last write, so any
    command may follow at once (``learn``, ``accumulate`` even while a
    broadcast's last sums are formed). ``W = readout_bits + 1`` is the width
    of an error; the cycle numbers below count from 1, the first cycle after
    the strobe:

    ``errors`` (after an ``update`` has finished)
        ``err_k = V_k - target [k = label]`` (exact; ``label >= K``: no
        label), ``e_k = step_error(err_k, error_shift, signal_bits)`` and
        the steps ``s_k = parameter_step(err_k, shift)`` of the ``learn`` and
        ``learn_bias`` commands that follow: ``K (W + 1) + 2`` cycles,
        ``ready`` low all of them. ``err_k`` is shifted serially, one bit a
        cycle, no barrel shifter
        (:class:`~delrec.hw.readout_learning.ReadoutLearning`): ``V_0`` is
        read in cycle 1, and element ``k`` loaded in cycle ``2 + k (W + 1)``
        and shifted through the next ``W + 1``.
    ``broadcast``
        ``L_i = broadcast_signal(sum_k e_k feedback_weight(w_out[k, i]))`` for
        ``i = 0 .. N-1``: ``N (K + 1) + 3`` cycles, ``ready`` low ``N (K +
        1)`` (it has read every weight by then). Per neuron, ``K`` weights
        (one a cycle: ``w_out[k, i]`` read in cycle ``i (K + 1) + k + 1``),
        then a cycle without a read, in which the accumulator of the
        multiplier's DSP gives the neuron's sum and is loaded for the next
        neuron (the sum over ``k`` is the DSP's: no adder in logic).
        ``signal_valid`` is high for one cycle, cycle ``(i + 1) (K + 1) +
        3``, with ``signal_neuron = i`` and ``signal_value = L_i`` (no
        backpressure; neuron ``N - 1``'s pulse is in the last busy cycle).
    ``learn`` with ``neuron = j``
        ``w_out[k, j] = weight_update(w_out[k, j], s_k, weight_store_bits)``
        for every ``k``: ``2 K + 4`` cycles, ``ready`` low all of them (back
        to back learns ``2 K + 5`` apart). ``w_out[k, j]`` is read in cycle
        ``2 k + 1`` and written in cycle ``2 k + 6``: the weight memory is
        read in odd cycles only and written in even ones only, never both in
        one cycle (a single-port memory will do, see ``weight_port``).
    ``learn_bias``
        ``b_out[k]`` likewise (``readout_bias_store_bits``): ``2 K + 4``
        cycles, ``ready`` low all of them (``b_out[k]`` read in cycle ``2 k +
        3``, written in cycle ``2 k + 6``; no weight is read).

    Host access while ``busy`` is low: weight and bias writes of the stored
    (learning) copies; ``read_en`` with ``read_what`` (:class:`ReadWhat`)
    and ``read_addr`` puts the raw bits of the element, zero-extended, on
    ``read_data`` with a one-cycle ``read_valid`` pulse one cycle later (a
    value, score or bias) or :data:`WEIGHT_LATENCY` cycles later (a
    weight, through the weight memory's read port); ``read_data`` then holds
    it until the next ``read_en``, which waits for ``read_valid``.

    With ``weight_port=True`` the weight memory is not in the readout: it
    drives ``weight_port`` (:func:`weight_port_signature`: ``addr``,
    ``read_en``, ``read_data`` :data:`WEIGHT_LATENCY` cycles after a read,
    ``write_en``, ``write_data``), one address for reads and writes and
    never a read and a write in the same cycle, for a memory the caller
    places (an iCE40 SPRAM registered twice, or a
    :class:`~delrec.hw.banked.BankedMemory` with both addresses on
    ``addr``). The host's weight writes and weight reads go through it (a
    write on ``weight_write_addr``, a read on ``read_addr``; the host never
    writes and reads in one cycle); commands and cycles are the same.

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
    weight_port : bool
        Leave the weight memory out and expose ``weight_port`` (then
        ``weight_bank_bits`` is not used).
    """

    def __init__(self, neurons: int, classes: int, spec: CoreSpec, leak_bits: int, *,
                 weight_bank_bits: int | None = None, learning: bool = False, weight_port: bool = False):
        for name, value in (("neurons", neurons), ("classes", classes), ("leak_bits", leak_bits)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"Readout {name} must be a positive integer, not {value!r}")
        if not isinstance(spec, CoreSpec):
            raise ValueError(f"Readout spec must be a CoreSpec, not {spec!r}")
        for name, value in (("learning", learning), ("weight_port", weight_port)):
            if not isinstance(value, bool):
                raise ValueError(f"Readout {name} must be true or false, not {value!r}")
        check_bank_bits(weight_bank_bits)
        self._weight_bank_bits = weight_bank_bits
        self._neurons, self._classes, self._spec, self._learning = neurons, classes, spec, learning
        self._weight_port = weight_port
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
        if weight_port:
            members["weight_port"] = Out(weight_port_signature(neurons, classes, spec))
        super().__init__(members)

    def elaborate(self, platform):
        spec = self._spec
        N, K = self._neurons, self._classes
        m = Module()

        def memory(name, shape):
            m.submodules[name] = words = Memory(shape=shape, depth=K, init=[], attrs=_NO_RW_CHECK,
                                                src_loc_at=1)
            return words

        biases = memory("biases", signed(spec.readout_bias_store_bits))
        currents = memory("currents", signed(spec.acc_bits))
        values = memory("values", signed(spec.readout_bits))
        scores = memory("scores", signed(spec.score_bits))

        bias_w = biases.write_port()
        bias_r = biases.read_port()
        current_w = currents.write_port()
        current_r = currents.read_port()
        value_w = values.write_port()
        value_r = values.read_port()
        score_w = scores.write_port()
        score_r = scores.read_port()

        idle = Signal()                      # the FSM waits for a command (pipelines may still run)
        unit = Signal(range(K + 1))          # stage 0: the unit whose reads are issued
        weight_addr = Signal(range(N * K))   # w_out[unit, j]: a register, so that the weight
                                             # memory's address comes from a register
        addr_step = Signal(signed(3))        # weight_addr's change this cycle (IDLE loads it)
        phase = Signal()                     # learn, learn_bias: a write cycle (else a read cycle)
        issue = Signal()                     # a command reads the weight at weight_addr
        accumulating = Signal()              # stage 1 flags and unit
        updating = Signal()
        unit_1 = Signal.like(unit)
        # the later stages of an update: updates[n], units[n] are stage n + 2 (see below)
        updates = [Signal(name=f"updating_{n + 2}") for n in range(UPDATE_STAGES - 1)]
        units = [Signal.like(unit, name=f"unit_{n + 2}") for n in range(UPDATE_STAGES - 1)]
        unit_2 = units[0]
        update_tail = Signal()
        m.d.comb += update_tail.eq(updating | Cat(*updates).any())

        weights, weight_data = self._weight_memory(m, idle, weight_addr, issue)
        weight_3 = forward_value(weight_data, spec.weight_frac_bits)   # the weight of stage 3
        accumulating_2, accumulating_3 = Signal(), Signal()
        accumulate_tail = Signal()                    # stages 2 and 3 of an accumulation
        m.d.sync += [accumulating_2.eq(accumulating), accumulating_3.eq(accumulating_2)]
        m.d.comb += accumulate_tail.eq(accumulating_2 | accumulating_3)
        m.d.sync += [accumulating.eq(0), updating.eq(0), weight_addr.eq(weight_addr + addr_step)]
        m.d.sync += [stage.eq(prev) for stage, prev in zip(updates, [updating] + updates)]
        m.d.sync += [stage.eq(prev) for stage, prev in zip(units, [unit_1] + units)]
        m.d.comb += [
            current_r.addr.eq(Mux(accumulating_2, unit_2, unit)),
            bias_r.addr.eq(Mux(idle, self.read_addr, unit)),
            value_r.addr.eq(Mux(idle, self.read_addr, unit)),
            # the score of stage 4 is read in stage 3 (after the FSM has left UPDATE)
            score_r.addr.eq(Mux(idle & ~update_tail, self.read_addr, units[1])),
        ]

        learning = None
        learn_write = Signal()                        # a learn writes weight_result at weight_addr
        bias_learn_write = Signal()                   # a learn_bias writes bias_result at unit_4
        if self._learning:
            m.submodules.learning = learning = ReadoutLearning(N, K, spec)
            m.d.comb += [
                learning.unit.eq(unit), learning.write_unit.eq(unit_1), learning.e_unit.eq(unit_2),
                learning.value.eq(value_r.data), learning.weight.eq(weight_data),
                learning.bias.eq(bias_r.data),
                self.signal_valid.eq(learning.signal_valid), self.signal_neuron.eq(learning.signal_neuron),
                self.signal_value.eq(learning.signal_value),
            ]
            m.d.comb += [getattr(learning, name).eq(getattr(self, name))
                         for name in ("label", "target", "error_shift", "shift")]
        self._write_ports(m, idle, weights, weight_addr, learn_write, bias_w, bias_learn_write, units[2],
                          learning)
        commands = [("accumulate", "ACCUMULATE"), ("update", "UPDATE"), ("clear", "CLEAR")]
        if learning is not None:
            commands += [("errors", "ERRORS"), ("broadcast", "BROADCAST"), ("learn", "LEARN"),
                         ("learn_bias", "LEARN_BIAS")]

        with m.FSM(name="readout_fsm") as fsm:
            with m.State("IDLE"):
                # the address of w_out[0, neuron] is registered whether or not a command comes:
                # the command strobe never gates the product
                m.d.sync += [unit.eq(0), weight_addr.eq(self.neuron * K), phase.eq(0)]
                for n, (strobe, state) in enumerate(commands):
                    with (m.If if n == 0 else m.Elif)(getattr(self, strobe)):
                        m.next = state
                        if strobe == "broadcast":   # it reads every weight, from address 0
                            m.d.sync += weight_addr.eq(0)
            with m.State("ACCUMULATE"):
                m.d.comb += [issue.eq(1), addr_step.eq(1)]
                m.d.sync += [accumulating.eq(1), unit_1.eq(unit), unit.eq(unit + 1)]
                with m.If(unit == K - 1):
                    m.next = "IDLE"
            with m.State("UPDATE"):
                with m.If(~accumulate_tail):   # the last writes go first
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
                self._learning_states(m, learning, unit, unit_1, units, weight_addr, phase, bias_r, issue,
                                      addr_step, learn_write, bias_learn_write)
        m.d.comb += idle.eq(fsm.ongoing("IDLE"))

        # Stage 3 of an accumulation: R_k += w_out[k, j] (wrapping, exact by the compiler's checks).
        with m.If(accumulating_3):
            m.d.comb += [
                current_w.en.eq(1),
                current_w.addr.eq(units[1]),
                current_w.data.eq((current_r.data + weight_3)[:spec.acc_bits]),
            ]
        # An update, one adder or the multiplier per stage: stage 1 leaks V_k and adds
        # R_k + b_k; stage 2 sums them; stage 3 saturates V_k (and reads score_k); stage 4
        # writes V_k and adds it to score_k; stage 5 saturates the score and writes it (when
        # the step counts) and R_k = 0.
        leaked = Signal(signed(spec.readout_bits))
        bias = forward_value(bias_r.data, spec.weight_frac_bits)
        base = Signal(signed(max(spec.acc_bits, spec.readout_bits) + 1))
        value_sum = Signal(signed(len(base) + 1))
        value = Signal(signed(spec.readout_bits))
        score_sum = Signal(signed(spec.score_bits + 1))
        m.d.sync += [
            leaked.eq(decay(value_r.data, self.leak, spec.leak, spec.decay_bits)),
            base.eq(current_r.data + bias),
            value_sum.eq(leaked + base),
            value.eq(saturate(value_sum, spec.readout_bits)),
            score_sum.eq(score_r.data + value),
        ]
        with m.If(updates[-2]):
            m.d.comb += [value_w.en.eq(1), value_w.addr.eq(units[-2]), value_w.data.eq(value)]
        with m.If(updates[-1]):
            m.d.comb += [
                current_w.en.eq(1), current_w.addr.eq(units[-1]), current_w.data.eq(0),
                score_w.en.eq(self.count), score_w.addr.eq(units[-1]),
                score_w.data.eq(saturate(score_sum, spec.score_bits)),
            ]

        learning_busy = learning.busy if learning is not None else Const(0)
        m.d.comb += [
            self.ready.eq(idle & ~update_tail),
            self.busy.eq(~idle | accumulating | accumulate_tail | update_tail | learning_busy),
        ]
        self._host_reads(m, idle, value_r.data, score_r.data, bias_r.data, weight_data)
        return m

    def _weight_memory(self, m, idle, weight_addr, issue):
        """The weights inside (a :class:`BankedMemory`) or behind ``weight_port``: (memory, read data).

        Inside, the memory has a read and a write address (the read address
        is ``weight_addr``, or ``read_addr`` while idle); with
        ``weight_port`` one address (while idle the host's write address when
        it writes, else ``read_addr``) and a ``read_en`` only where a word is read.
        """
        spec, N, K = self._spec, self._neurons, self._classes
        if self._weight_port:
            port = self.weight_port
            m.d.comb += [
                port.addr.eq(Mux(idle, Mux(self.weight_write_en, self.weight_write_addr, self.read_addr),
                                 weight_addr)),
                port.read_en.eq(Mux(idle, self.read_en & (self.read_what == ReadWhat.WEIGHT), issue)),
            ]
            return port, port.read_data
        m.submodules.weights = weights = BankedMemory(shape=signed(spec.weight_store_bits), depth=N * K,
                                                      bank_bits=self._weight_bank_bits)
        m.d.comb += [weights.read_addr.eq(Mux(idle, self.read_addr, weight_addr)), weights.read_en.eq(1)]
        return weights, weights.read_data

    def _write_ports(self, m, idle, weights, weight_addr, learn_write, bias_w, bias_learn_write, bias_addr,
                     learning):
        """The weight and bias memories' write ports: the host's writes (idle), or the learning writes."""
        port = self._weight_port
        ports = ((weights.write_en, None if port else weights.write_addr, weights.write_data, "weight",
                  learn_write, weight_addr, learning.weight_result if learning is not None else None),
                 (bias_w.en, bias_w.addr, bias_w.data, "bias",
                  bias_learn_write, bias_addr, learning.bias_result if learning is not None else None))
        for en, addr, data, name, learn_en, learn_addr, learn_data in ports:
            host = [getattr(self, f"{name}_write_{field}") for field in ("en", "addr", "data")]
            if learning is None:
                m.d.comb += [en.eq(host[0]), data.eq(host[2])]
                if addr is not None:
                    m.d.comb += addr.eq(host[1])
                continue
            m.d.comb += [en.eq(host[0] | learn_en), data.eq(Mux(idle, host[2], learn_data))]
            if addr is not None:
                m.d.comb += addr.eq(Mux(idle, host[1], learn_addr))

    def _learning_states(self, m, learning, unit, unit_1, units, weight_addr, phase, bias_r, issue,
                         addr_step, learn_write, bias_learn_write):
        """The FSM states of the learning commands."""
        N, K = self._neurons, self._classes
        unit_4 = units[2]
        with m.State("ERRORS"):   # one element every W + 1 cycles, loaded when the counter wraps
            m.d.comb += learning.errors.eq(1)
            with m.If(learning.errors_load):
                m.d.sync += [unit_1.eq(unit), unit.eq(unit + 1)]
                with m.If(unit == K):
                    m.next = "IDLE"
        last = Signal()   # the broadcast has issued its last weight
        with m.State("BROADCAST"):   # per neuron K weights, then a gap (unit = K)
            gap = unit == K
            m.d.comb += [learning.broadcast.eq(1), learning.gap.eq(gap)]
            m.d.sync += unit_1.eq(unit)
            with m.If(gap):
                m.d.sync += unit.eq(0)
                with m.If(last):
                    m.next = "IDLE"
            with m.Else():
                m.d.comb += [issue.eq(1), addr_step.eq(1)]
                m.d.sync += [unit.eq(unit + 1), last.eq(weight_addr == N * K - 1)]
        # learn, learn_bias: reads in the odd cycles, writes (5 cycles later, after the result
        # is registered) in the even ones; weight_addr alternates between w_out[k, j] (read)
        # and w_out[k - 2, j] (written)
        reading = Signal()
        read_stages = delay_line(m, reading, WEIGHT_LATENCY + 2, "learn_read")
        written = read_stages[-1]
        m.d.comb += learning.capture.eq(read_stages[WEIGHT_LATENCY - 1])
        for state, write in (("LEARN", learn_write), ("LEARN_BIAS", bias_learn_write)):
            with m.State(state):
                m.d.sync += phase.eq(~phase)
                m.d.comb += [write.eq(written), addr_step.eq(Mux(phase, 3, -2))]
                with m.If(~phase & (unit != K)):
                    m.d.comb += reading.eq(1)
                    if state == "LEARN":
                        m.d.comb += issue.eq(1)
                    m.d.sync += [unit_1.eq(unit), unit.eq(unit + 1)]
                if state == "LEARN_BIAS":   # b_out[k] read beside s_k, the cycle before the capture
                    m.d.comb += bias_r.addr.eq(unit_1)
                with m.If(written & (unit_4 == K - 1)):
                    m.next = "IDLE"

    def _host_reads(self, m, idle, value, score, bias, weight):
        """``read_data`` and ``read_valid``: the word read for ``read_en``, then held."""
        what = Signal(2)
        reading = Signal()                     # a value, score or bias read was issued a cycle ago
        weight_reading = delay_line(m, idle & self.read_en & (self.read_what == ReadWhat.WEIGHT),
                                    WEIGHT_LATENCY, "weight_reading")[-1]
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
