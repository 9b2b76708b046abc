"""The core: time-multiplexed LIF neurons with delay queues and an optional learning unit."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from amaranth.hdl import Const, Module, Mux, Signal, signed
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from delrec.build import CoreBuild

from .delay_update import DelayUpdate
from .delays import DelayMemory
from .fanout import FanOut
from .fixed import check_bank_bits
from .history import SpikeHistory
from .input_history import InputHistory
from .learning_control import learning_states, trace_answers
from .neurons import NeuronArray
from .ports import (COUNTER_BITS, PROBE_LATENCY, SHIFT_BITS, STEP_REGISTER_BITS, ConfigRegister, CoreGeometry, Counter,
                    LearnFlag, ReadTarget, WriteTarget, input_layout, read_data_layout, read_layout,
                    spike_layout, write_layout)
from .readout import Readout
from .ring import FutureInputRing
from .scanner import SpikeScanner
from .shared_memory import SHARED_WORD_BITS, SharedMemory, SharedPort
from .traces import TraceUnit
from .weights import WEIGHT_READ_LATENCY, WeightMemory

__all__ = ["InferenceCore", "WEIGHT_READ_LATENCY"]


class _Parts(NamedTuple):
    """The core's components (``None`` where the build has no such part)."""

    queue: object
    readout: Readout
    w_in: WeightMemory
    w_rec: WeightMemory
    fan: FanOut
    scan: SpikeScanner
    neurons: NeuronArray
    delays: DelayMemory
    inputs: InputHistory | None
    traces: TraceUnit | None
    update: DelayUpdate | None


@dataclass
class _Registers:
    """Configuration registers and step counters."""

    theta: Signal
    leak: Signal
    readout_leak: Signal
    soft_reset: Signal
    score_start: Signal
    learn: Signal
    reach: Signal
    loss_start: Signal
    k_d: Signal
    k_out: Signal
    label: Signal
    target: Signal
    error_shift: Signal
    slot: Signal             # t mod H
    steps: Signal            # t: steps since CLEAR
    near: Signal             # min(t, 2H - 1): what the trace unit compares taps with
    events: Signal           # synaptic events since CLEAR
    cycles: Signal           # cycles of the step in progress
    last_cycles: Signal

    @classmethod
    def make(cls, g: CoreGeometry) -> "_Registers":
        spec, b = g.spec, g.build
        return cls(
            theta=Signal(signed(spec.v_bits)), leak=Signal(g.leak_bits), readout_leak=Signal(g.leak_bits),
            soft_reset=Signal(), score_start=Signal(STEP_REGISTER_BITS), learn=Signal(len(LearnFlag)),
            reach=Signal(range(b.max_reach + 1)), loss_start=Signal(STEP_REGISTER_BITS),
            k_d=Signal(SHIFT_BITS), k_out=Signal(SHIFT_BITS), label=Signal(g.label_bits),
            target=Signal(signed(spec.readout_bits)), error_shift=Signal(SHIFT_BITS),
            slot=Signal(g.history_bits if b.queue == "history" else spec.delay_bits),
            steps=Signal(COUNTER_BITS), near=Signal(g.history_bits + 1), events=Signal(COUNTER_BITS),
            cycles=Signal(COUNTER_BITS), last_cycles=Signal(COUNTER_BITS))

    def config(self) -> dict:
        """``{ConfigRegister: register}``."""
        R = ConfigRegister
        return {R.THETA: self.theta, R.LEAK: self.leak, R.READOUT_LEAK: self.readout_leak,
                R.RESET: self.soft_reset, R.SCORE_START: self.score_start, R.LEARN: self.learn,
                R.REACH: self.reach, R.LOSS_START: self.loss_start, R.LR_DELAY_SHIFT: self.k_d,
                R.LR_READOUT_SHIFT: self.k_out, R.LABEL: self.label, R.TARGET: self.target,
                R.ERROR_SHIFT: self.error_shift}


class InferenceCore(wiring.Component):
    """``C`` inputs -> ``N`` recurrent LIF neurons with delays -> ``K`` leaky readouts, optionally learning.

    Runs one time step per ``last=1`` input beat, bit-exact with the
    fixed-point golden models in the order of :class:`delrec.arith.CoreSpec`
    (:func:`delrec.golden.fixed.run_fixed`; a learning core:
    :class:`delrec.golden.online_fixed.FixedOnlineNetwork` with a per-step
    signal). The ``N`` neurons are time-multiplexed over ``P`` lanes: lane
    ``l`` owns neurons ``b*P + l`` (row ``b`` of ``B = N / P``), and every
    per-neuron memory is one :class:`~amaranth.lib.memory.Memory` per lane.
    Every memory has one synchronous read port and one write port (block
    RAM); the weight memories are single-port and packed for the iCE40
    UP5K's SPRAM (:class:`~delrec.hw.weights.WeightMemory`).

    Parts: the weight memories and the :class:`~delrec.hw.fanout.FanOut`
    that streams one weight column per event; the delay queue
    (:class:`~delrec.hw.ring.FutureInputRing` or
    :class:`~delrec.hw.history.SpikeHistory`) with the
    :class:`~delrec.hw.scanner.SpikeScanner`; the
    :class:`~delrec.hw.delays.DelayMemory`; the
    :class:`~delrec.hw.neurons.NeuronArray`; the
    :class:`~delrec.hw.readout.Readout`; with input delays the
    :class:`~delrec.hw.input_history.InputHistory`; a learning core adds the
    :class:`~delrec.hw.traces.TraceUnit` (with the Gaussian-derivative
    table) and the :class:`~delrec.hw.delay_update.DelayUpdate`, and its
    readout learns.

    Cycles (simple FSM control; the read-modify-writes are pipelined, one
    row of ``P`` neurons per cycle; the spike scans read rows ahead of the
    row being handled, ``L =`` :data:`~delrec.hw.ports.PROBE_LATENCY` cycles:
    2 for the ring, 4 for the spike history):

    * input, before the step: ``B + 1`` per event (one row per cycle); with
      input delays 2 per event (4 with a shared input history: the event is
      counted in the input history);
    * the step, from the ``last=1`` input beat to the ``last=1`` spike beat
      (the ``CYCLES`` counter), with a spike consumer that never stalls.
      A silent step costs exactly:

      - input delays only, the input scan: ``4`` per channel (``5`` with
        a shared input history), plus ``B`` per event that arrives (its
        fan-out);
      - history queue only, recurrent scan: ``B + 4`` (one row of ``P``
        spike bits per cycle, ``B + L``);
      - neuron update: ``B + 5`` (``B + 2 +``
        :attr:`~delrec.hw.neuron.NeuronDatapath.LATENCY`);
      - spike scan: ``B + L + 1``;
      - readout update and end-of-step beat: ``K + 6`` (``K + 1 +``
        :data:`~delrec.hw.readout.UPDATE_STAGES`);

      that is ``2B + K + 14`` with the ring, ``3B + K + 20`` with the
      history (``+ 4C`` with input delays). Each spike adds at least one
      cycle and at most ``B + 3`` (``B +`` :data:`WEIGHT_READ_LATENCY`) per
      arriving presynaptic spike (history: its recurrent fan-out) and
      ``max(B + 3, K + 2)`` (ring: the fan-out into the future slots and the
      ``K`` readout accumulations side by side) or ``K + 2`` (history) per
      emitted spike, ``+ 3`` once for a fan-out that must drain.
    * a step that learns (``LEARN`` flag) adds, before its last beat, the
      learning passes (:meth:`learning_cycles`): the traces
      (:class:`~delrec.hw.traces.TraceUnit`, one cycle per tap and a few per
      channel), and from ``LOSS_START`` on the readout's errors and
      broadcast (``N (K + 1)``), the readout weights of every neuron that
      fired (``2K + 5`` each), and one weight column per learning delay
      (``B + 10`` each, or its delay's serial update when that is longer).

    Parameters
    ----------
    build : CoreBuild
        The configuration: sizes, spec, lanes, delay kind, queue, input
        delays and learning unit.
    weight_bank_bits : int, optional
        Split the input, recurrent and readout weight memories into banks of
        at most this many bits (a power of two; see
        :func:`~delrec.hw.fixed.words_per_bank`), each bank's word registered
        before the bank is chosen: for block RAMs with slow outputs (16384 on
        the ECP5, one ``DP16KD`` per bank). Behaviour and cycles are the same
        with or without banks.

    Attributes
    ----------
    inputs : In(stream.Signature(input_layout))
        ``channel``, ``last``: ``last=0`` is one event of ``channel`` (an
        event on a channel ``>= C`` is dropped); ``last=1`` ends the step's
        input and starts its computation.
    spikes : Out(stream.Signature(spike_layout))
        ``neuron``, ``last``: the step's spikes in increasing order, then a
        ``last=1`` beat once the readout is updated (and the step learned).
    write : In(stream.Signature(write_layout))
        ``target`` (:class:`~delrec.hw.ports.WriteTarget`), ``addr``,
        ``data`` (two's complement masked to the element width); ready only
        between steps. Writes to addresses outside a target are dropped.
    read : In(stream.Signature(read_layout))
        ``target`` (:class:`~delrec.hw.ports.ReadTarget`), ``addr``; ready
        only between steps.
    read_data : Out(stream.Signature(read_data_layout))
        ``data``: the raw bits of the element read, zero-extended (0 for
        an address outside the target).
    busy : Out(1)
        From the first input beat of a step to its final spike beat, and
        during a ``CLEAR`` or a read.
    """

    def __init__(self, build: CoreBuild, *, weight_bank_bits: int | None = None):
        if not isinstance(build, CoreBuild):
            raise TypeError(f"Build must be a delrec.build.CoreBuild, not {build!r}")
        check_bank_bits(weight_bank_bits)
        self.build = build
        self.geometry = CoreGeometry(build)
        self.spec = build.spec
        self.queue_kind = build.queue
        self.weight_bank_bits = weight_bank_bits
        g = self.geometry
        super().__init__({
            "inputs": In(stream.Signature(input_layout(g))),
            "spikes": Out(stream.Signature(spike_layout(g))),
            "write": In(stream.Signature(write_layout(g))),
            "read": In(stream.Signature(read_layout(g))),
            "read_data": Out(stream.Signature(read_data_layout(g))),
            "busy": Out(1),
        })

    @staticmethod
    def learning_cycles(build: CoreBuild, *, taps: list, channels: int, signal: bool, lr_delay_shift: int,
                        readout_bias: bool = False, spikes: int = 0) -> int:
        """Cycles a step that learns adds to its inference, exactly when no neuron fired.

        ``taps``: the taps of each learning channel in pass order (``hi - lo + 1``
        of :func:`delrec.arith.tap_range`, 0 for none); ``channels``: the
        learning channels (``C`` when the input delays learn, plus ``N`` when
        the recurrent ones do); ``signal``: the step is at or after
        ``LOSS_START`` (errors, broadcast, updates); ``lr_delay_shift``:
        ``k_d``; ``readout_bias``: the readout biases learn. Each neuron that
        fired adds between 1 and ``2K + 5`` more (its readout weights'
        update); the value returned counts 1 per spike.

        The trace pass: :meth:`TraceUnit.pass_cycles <delrec.hw.traces.TraceUnit.pass_cycles>`
        ``+ 2``. From ``LOSS_START`` on also: the errors, broadcast and
        readout weights ``K (W + 1) + N (K + 1) + B + L + 5`` (``W =
        readout_bits + 1``, ``L`` the history's
        :data:`~delrec.hw.ports.PROBE_LATENCY`: the scan of the neurons that fired), ``+ 2K + 4`` with the readout biases, and the
        columns ``(B + 6 + R) + (M - 1) max(B + 7 + R, F + 1) + F + 1`` for
        ``M`` channels, ``R`` the delay update's ``ROW_LATENCY`` and ``F``
        its ``finish_latency(k_d)`` (a column's finish runs while the next
        column streams).
        """
        cycles = TraceUnit.cycles_of_pass(taps, PROBE_LATENCY["history"]) + 2
        if signal:
            K, N, B = build.classes, build.neurons, build.rows
            sum_bits, rows = DelayUpdate.widths(build)
            finish = (sum_bits - 2) + lr_delay_shift + DelayUpdate.FINISH_OVERHEAD   # finish_latency(k_d)
            cycles += K * (build.spec.readout_bits + 2) + N * (K + 1) + B + PROBE_LATENCY["history"] + 5 + spikes
            cycles += 2 * K + 4 if readout_bias else 0
            if channels:
                cycles += (B + 6 + rows) + (channels - 1) * max(B + 7 + rows, finish + 1) + finish + 1
        return cycles

    # -- structure -------------------------------------------------------------------------
    def _parts(self, m: Module) -> _Parts:
        b, g, spec = self.build, self.geometry, self.spec
        C, N, K, P, B = b.inputs, b.neurons, b.classes, b.lanes, b.rows
        if b.queue == "history":
            queue = SpikeHistory(N, P, spec, depth=b.history_depth)
        else:
            queue = FutureInputRing(N, P, spec)
        layout, shared = b.shared_layout() if b.shared_memory else {}, None
        if layout:
            depth = sum(words for _, words in layout.values())
            shared = SharedMemory(depth, len(layout))

        def place(name):   # an array's place in the shared memory, if the build has one
            return (layout[name][0], depth) if name in layout else None

        parts = _Parts(
            queue=queue,
            readout=Readout(N, K, spec, g.leak_bits, weight_bank_bits=self.weight_bank_bits,
                            learning=b.learns, **({"weight_port": True} if layout else {})),
            w_in=WeightMemory(C * B, P, spec.weight_bits, bank_bits=self.weight_bank_bits, name="w_in",
                              shared=place("w_in")),
            w_rec=WeightMemory(N * B, P, spec.weight_bits, bank_bits=self.weight_bank_bits, name="w_rec"),
            fan=FanOut(b), scan=SpikeScanner(b), neurons=NeuronArray(b), delays=DelayMemory(b),
            inputs=InputHistory(b, shared=place("history")) if b.input_delays is not None else None,
            traces=TraceUnit(b, sample_latency=PROBE_LATENCY["history"]) if b.learns else None,
            update=DelayUpdate(b) if b.learns else None)
        for name, part in parts._asdict().items():
            if part is not None:
                m.submodules[name] = part
        if shared is not None:
            m.submodules.shared = shared
            clients = {"w_in": parts.w_in.shared, "w_out": self._readout_port(m, parts.readout, layout["w_out"][0],
                                                                              depth)}
            if parts.inputs is not None:
                clients["history"] = parts.inputs.shared
            for n, name in enumerate(layout):
                wiring.connect(m, clients[name], getattr(shared, f"port_{n}"))
        return parts

    @staticmethod
    def _readout_port(m: Module, readout: Readout, base: int, depth: int):
        """The readout's external weight port as a client of the shared memory (its words from ``base`` on)."""
        port = SharedPort(depth).create(path=("readout_weights",))
        weights = readout.weight_port
        m.d.comb += [
            port.addr.eq(base + weights.addr),
            port.read_en.eq(weights.read_en),
            port.write_en.eq(weights.write_en.replicate(SHARED_WORD_BITS // 4)),
            port.write_data.eq(weights.write_data),
            weights.read_data.eq(port.read_data),
        ]
        return port

    def _wire(self, m: Module, p: _Parts, r: _Registers, delay_pass: Signal) -> None:
        """The connections that never change: weights to the fan-out, the fan-out and the neurons
        to the queue, the registers to their users."""
        b = self.build
        m.d.comb += [
            p.w_in.read_index.eq(p.fan.read_index), p.w_rec.read_index.eq(p.fan.read_index),
            p.w_in.read_en.eq(p.fan.active), p.w_rec.read_en.eq(p.fan.active),
            p.fan.w_in.eq(p.w_in.weight), p.fan.w_rec.eq(p.w_rec.weight),
            p.fan.delay.eq(p.delays.row_delay),
            p.scan.row_delay.eq(p.delays.row_delay),
            p.scan.probe_spikes.eq(p.queue.probe_spikes),
            p.delays.row.eq(p.fan.read_index if b.delay_kind == "synaptic" else p.scan.probe_row),
            p.queue.slot.eq(r.slot),
            p.queue.probe_en.eq(p.scan.probe_en), p.queue.probe_row.eq(p.scan.probe_row),
            p.queue.deliver_en.eq(p.fan.valid & ~delay_pass),
            p.queue.deliver_row.eq(p.fan.row),
            p.queue.deliver_weight.eq(p.fan.weight),
            p.queue.deliver_offset.eq(p.fan.offset),
            p.queue.take_en.eq(p.neurons.take_en), p.queue.take_row.eq(p.neurons.take_row),
            p.neurons.take_current.eq(p.queue.take_current),
            p.queue.record_en.eq(p.neurons.record_en), p.queue.record_row.eq(p.neurons.record_row),
            p.queue.record_spikes.eq(p.neurons.record_spikes),
            p.neurons.theta.eq(r.theta), p.neurons.leak.eq(r.leak), p.neurons.soft_reset.eq(r.soft_reset),
            p.readout.leak.eq(r.readout_leak), p.readout.neuron.eq(p.scan.pick_neuron),
            p.readout.count.eq(r.steps >= r.score_start),
        ]
        if p.inputs is not None:
            m.d.comb += p.inputs.slot.eq(r.slot)
        if b.learns:
            m.d.comb += [
                p.readout.label.eq(r.label), p.readout.target.eq(r.target),
                p.readout.error_shift.eq(r.error_shift), p.readout.shift.eq(r.k_out),
                p.neurons.signal_write_en.eq(p.readout.signal_valid),
                p.neurons.signal_write_addr.eq(p.readout.signal_neuron),
                p.neurons.signal_write_data.eq(p.readout.signal_value),
                p.neurons.state_row.eq(p.fan.ahead_row),
                p.traces.reach.eq(r.reach), p.traces.leak.eq(r.leak), p.traces.step.eq(r.near),
                p.traces.learn_inputs.eq(r.learn[1] if b.input_delays is not None else 0),
                p.traces.learn_recurrent.eq(r.learn[2]),
                p.update.row_en.eq(p.fan.valid & delay_pass),
                p.update.row_weight.eq(p.fan.weight),
                p.update.row_signal.eq(p.neurons.state_signal),
                p.update.row_psi.eq(p.neurons.state_psi),
                p.update.shift.eq(r.k_d),
            ]

    def _host_writes(self, m: Module, p: _Parts, r: _Registers, accept: Signal) -> None:
        """Decode an accepted ``write`` beat into its memory or register (outside a target: dropped)."""
        b, g, spec = self.build, self.geometry, self.spec
        C, N, K = b.inputs, b.neurons, b.classes
        request = self.write.payload
        lane_bits = g.lane_bits
        lane = request.addr[:lane_bits] if lane_bits else Const(0, 1)
        row = request.addr[lane_bits:]

        def hit(target, limit):
            return accept & (request.target == target) & (request.addr < limit)

        for weights, target, limit in ((p.w_in, WriteTarget.W_IN, C * N), (p.w_rec, WriteTarget.W_REC, N * N)):
            m.d.comb += [weights.write_index.eq(row), weights.write_data.eq(request.data[:spec.weight_bits]),
                         weights.write_en.eq(Mux(hit(target, limit), 1 << lane, 0) if lane_bits
                                             else hit(target, limit))]
        delay_limit = N * N if b.delay_kind == "synaptic" else N
        m.d.comb += [
            p.delays.write_en.eq(hit(WriteTarget.DELAY, delay_limit) | (
                hit(WriteTarget.INPUT_DELAY, C) if b.input_delays is not None else 0)),
            p.delays.write_input.eq(request.target == WriteTarget.INPUT_DELAY),
            p.delays.write_addr.eq(request.addr), p.delays.write_data.eq(request.data),
            p.neurons.bias_write_en.eq(hit(WriteTarget.BIAS, N)),
            p.neurons.bias_write_addr.eq(request.addr), p.neurons.bias_write_data.eq(request.data),
            p.readout.weight_write_en.eq(hit(WriteTarget.W_OUT, N * K)),
            p.readout.weight_write_addr.eq(request.addr), p.readout.weight_write_data.eq(request.data),
            p.readout.bias_write_en.eq(hit(WriteTarget.BIAS_OUT, K)),
            p.readout.bias_write_addr.eq(request.addr), p.readout.bias_write_data.eq(request.data),
        ]
        if p.traces is not None:
            m.d.comb += [p.traces.lut_write_en.eq(hit(WriteTarget.LUT, b.lut_depth)),
                         p.traces.lut_write_addr.eq(request.addr), p.traces.lut_write_data.eq(request.data)]
        registers = r.config()
        if not b.learns:
            registers = {k: v for k, v in registers.items() if k <= ConfigRegister.SCORE_START}
        with m.If(accept & (request.target == WriteTarget.CONFIG)):
            with m.Switch(request.addr):
                for address, register in registers.items():
                    with m.Case(address):
                        if address == ConfigRegister.REACH:   # a reach beyond the table is kept at its size
                            m.d.sync += register.eq(Mux(request.data > b.max_reach, b.max_reach, request.data))
                        else:
                            m.d.sync += register.eq(request.data)

    def elaborate(self, platform):
        b, g = self.build, self.geometry
        C, N, K, B = b.inputs, b.neurons, b.classes, b.rows
        history, learns = b.queue == "history", b.learns
        m = Module()
        p = self._parts(m)
        r = _Registers.make(g)
        step_open = Signal()                        # between a step's first input beat and its end
        step_running = Signal()                     # between the last=1 input beat and the end
        delay_pass = Signal()                       # the fan-out feeds the delay update, not the queue
        self._wire(m, p, r, delay_pass)
        sample_age = trace_answers(self, m, p) if learns else None
        with m.If(step_running):
            m.d.sync += r.cycles.eq(r.cycles + 1)
        # synaptic events: N per weight column into the queue, K per spike into the readout
        m.d.sync += r.events.eq(r.events + Mux(p.fan.start & ~delay_pass, N, 0) + Mux(p.readout.accumulate, K, 0))

        # -- spike output register
        spike_valid, spike_last = Signal(), Signal()
        spike_neuron = Signal.like(self.spikes.payload.neuron)
        slot_free = Signal()
        m.d.comb += [self.spikes.valid.eq(spike_valid), self.spikes.payload.neuron.eq(spike_neuron),
                     self.spikes.payload.last.eq(spike_last), slot_free.eq(~spike_valid | self.spikes.ready)]
        with m.If(self.spikes.valid & self.spikes.ready):
            m.d.sync += spike_valid.eq(0)

        write_accept = Signal()
        m.d.comb += write_accept.eq(self.write.valid & self.write.ready)
        self._host_writes(m, p, r, write_accept)
        read_target = Signal(ReadTarget)
        read_addr = Signal.like(self.read.payload.addr)

        inputs = self.inputs.payload
        with m.FSM(name="control") as control:
            with m.State("IDLE"):
                m.d.comb += [
                    self.write.ready.eq(~step_open),
                    self.read.ready.eq(~step_open & ~self.write.valid),
                    self.inputs.ready.eq(step_open | (~self.write.valid & ~self.read.valid)),
                ]
                with m.If(write_accept & (self.write.payload.target == WriteTarget.CLEAR)):
                    for part in (p.queue, p.readout, p.neurons, p.inputs, p.traces):
                        if part is not None:
                            m.d.comb += part.clear.eq(1)
                    m.next = "CLEAR"
                with m.Elif(self.read.valid & self.read.ready):   # registered: no path into memories
                    m.d.sync += [read_target.eq(self.read.payload.target), read_addr.eq(self.read.payload.addr)]
                    m.next = "READ_ISSUE"
                with m.Elif(self.inputs.valid & self.inputs.ready):
                    m.d.sync += step_open.eq(1)
                    with m.If(inputs.last):
                        m.d.sync += [step_running.eq(1), r.cycles.eq(0)]
                        if p.inputs is not None:
                            m.next = "INPUT_SCAN"
                        elif history:
                            m.d.comb += p.scan.start.eq(1)
                            m.next = "SCAN_PICK"
                        else:
                            m.d.comb += p.neurons.start.eq(1)
                            m.next = "UPDATE"
                    with m.Elif(inputs.channel < C):
                        if p.inputs is not None:
                            m.d.comb += [p.inputs.count_en.eq(1), p.inputs.count_channel.eq(inputs.channel)]
                            m.next = "INPUT_COUNT"
                        else:
                            m.d.comb += [p.fan.start.eq(1), p.fan.start_base.eq(inputs.channel * B)]
                            m.next = "INPUT"
            with m.State("INPUT"):
                with m.If(p.fan.last_issue | ~p.fan.active):
                    m.next = "IDLE"
            with m.State("INPUT_COUNT"):            # the input history counts the event
                with m.If(~p.inputs.busy if p.inputs is not None else 1):
                    m.next = "IDLE"
            with m.State("CLEAR"):
                busy = p.queue.busy | p.readout.busy | p.neurons.busy
                for part in (p.inputs, p.traces):
                    if part is not None:
                        busy = busy | part.busy
                with m.If(~busy):
                    m.d.sync += [r.slot.eq(0), r.steps.eq(0), r.near.eq(0), r.events.eq(0),
                                 r.last_cycles.eq(0)]
                    m.next = "IDLE"
            self._read_states(m, p, r, read_target, read_addr)
            if p.inputs is not None:
                self._input_scan_states(m, p, r)
            self._step_states(m, p, r, slot_free, spike_valid, spike_neuron, spike_last)
            if learns:
                learning_states(self, m, p, r, delay_pass, slot_free, spike_valid, spike_last)
            with m.State("FINISH"):
                with m.If(self.spikes.ready):
                    near_top = 2 * b.history_depth - 1
                    m.d.sync += [
                        r.slot.eq(r.slot + 1), r.steps.eq(r.steps + 1), step_open.eq(0), step_running.eq(0),
                        r.near.eq(Mux(r.near == near_top, near_top, r.near + 1)),
                        r.last_cycles.eq(r.cycles + 1),
                    ]
                    m.next = "IDLE"
        if history:   # the recurrent scan probes age 1 + d_j, the trace unit its taps, the others age 0
            for lane in range(b.lanes):
                with m.If(control.ongoing("SCAN_PICK") | control.ongoing("SCAN_FANOUT")):
                    m.d.comb += p.queue.probe_age[lane].eq(1 + p.delays.row_delay[lane])
                if learns:
                    with m.Elif(control.ongoing("LEARN_TRACES")):
                        m.d.comb += p.queue.probe_age[lane].eq(sample_age)
        m.d.comb += self.busy.eq(~control.ongoing("IDLE") | step_open)
        return m

    # -- the states of a step --------------------------------------------------------------------
    def _input_scan_states(self, m: Module, p: _Parts, r: _Registers) -> None:
        """Input delays: each channel's count ``round(d_c)`` steps ago, fanned out that many times.

        Per channel: its delay is read (``INPUT_DELAY``), then its count at
        that age, then (while the count comes) the next step's slot of the
        channel is zeroed, then the count's fan-outs: 4 cycles (5 with a
        shared input history, whose reads take 3), plus ``B`` per event that
        arrives.
        """
        C, B = self.build.inputs, self.build.rows
        channel = Signal(range(C))
        left = Signal(self.spec.count_bits)         # fan-outs of the channel still to start
        counted = Signal()                          # the channel's count has come

        def next_channel():
            with m.If(channel == C - 1):
                m.d.sync += channel.eq(0)
                m.d.comb += p.scan.start.eq(1)
                m.next = "SCAN_PICK"
            with m.Else():
                m.d.sync += channel.eq(channel + 1)
                m.next = "INPUT_SCAN"

        with m.State("INPUT_SCAN"):                 # read the channel's delay
            m.d.comb += [p.delays.read_en.eq(1), p.delays.read_input.eq(1), p.delays.read_addr.eq(channel)]
            m.next = "INPUT_SCAN_COUNT"
        with m.State("INPUT_SCAN_COUNT"):           # its count at that age
            m.d.comb += [p.inputs.read_en.eq(1), p.inputs.read_channel.eq(channel),
                         p.inputs.read_age.eq(p.delays.read_forward)]
            m.d.sync += counted.eq(0)
            m.next = "INPUT_SCAN_ZERO"
        with m.State("INPUT_SCAN_ZERO"):            # zero its next slot
            m.d.comb += [p.inputs.zero_en.eq(1), p.inputs.zero_channel.eq(channel)]
            m.d.sync += counted.eq(p.inputs.read_valid)
            m.next = "INPUT_SCAN_FANOUT"
        with m.State("INPUT_SCAN_FANOUT"):
            count = p.inputs.read_data
            with m.If(counted | p.inputs.read_valid):
                with m.If(count != 0):
                    m.d.comb += [p.fan.start.eq(1), p.fan.start_base.eq(channel * B)]
                    m.d.sync += left.eq(count - 1)
                    m.next = "INPUT_SCAN_WAIT"
                with m.Else():
                    next_channel()
        with m.State("INPUT_SCAN_WAIT"):            # the channel's fan-outs, back to back
            with m.If(p.fan.last_issue):
                with m.If(left != 0):
                    m.d.comb += [p.fan.start.eq(1), p.fan.start_base.eq(channel * B)]
                    m.d.sync += left.eq(left - 1)
                with m.Else():
                    next_channel()

    def _step_states(self, m: Module, p: _Parts, r: _Registers, slot_free, spike_valid, spike_neuron,
                     spike_last) -> None:
        """Recurrent scan (history), neuron update, spikes out and readout update."""
        b = self.build
        B = b.rows
        history, learns = b.queue == "history", b.learns
        # history queue: deliver the recurrent spikes due now (age 1 + d_j) into the currents
        with m.State("SCAN_PICK"):
            with m.If(p.scan.pending):
                m.d.comb += [p.fan.start.eq(1), p.fan.start_base.eq(p.scan.pick_neuron * B),
                             p.fan.start_recurrent.eq(1), p.scan.pick.eq(1)]
                m.next = "SCAN_FANOUT"
            with m.Elif(p.scan.done & p.fan.done):
                m.d.comb += p.neurons.start.eq(1)
                m.next = "UPDATE"
        with m.State("SCAN_FANOUT"):
            with m.If(p.fan.last_issue):
                m.next = "SCAN_PICK"
        with m.State("UPDATE"):                     # once the last input's fan-out has drained
            m.d.comb += p.neurons.advance.eq(p.fan.done)
            with m.If(p.neurons.done):
                m.d.comb += p.scan.start.eq(1)
                m.next = "EMIT_PICK"
        # every spike of the step, in order: output beat, readout, ring fan-out
        with m.State("EMIT_PICK"):
            with m.If(p.scan.pending):
                with m.If(slot_free & p.readout.ready):
                    m.d.sync += [spike_valid.eq(1), spike_neuron.eq(p.scan.pick_neuron), spike_last.eq(0)]
                    m.d.comb += [p.readout.accumulate.eq(1), p.scan.pick.eq(1)]
                    if not history:
                        m.d.comb += [p.fan.start.eq(1), p.fan.start_base.eq(p.scan.pick_neuron * B),
                                     p.fan.start_recurrent.eq(1),
                                     p.fan.start_offset.eq((1 + p.scan.pick_delay)[:self.spec.delay_bits])]
                    m.next = "EMIT_WAIT"
            with m.Elif(p.scan.done & p.fan.done & p.readout.ready):
                m.d.comb += p.readout.update.eq(1)
                m.next = "READOUT"
        with m.State("EMIT_WAIT"):
            with m.If((p.fan.last_issue | ~p.fan.active) & p.readout.ready):
                m.next = "EMIT_PICK"
        with m.State("READOUT"):
            with m.If(~p.readout.busy & slot_free):
                if learns:
                    with m.If(r.learn[0]):
                        m.d.comb += p.traces.start.eq(1)
                        m.next = "LEARN_TRACES"
                    with m.Else():
                        m.d.sync += [spike_valid.eq(1), spike_last.eq(1)]
                        m.next = "FINISH"
                else:
                    m.d.sync += [spike_valid.eq(1), spike_last.eq(1)]
                    m.next = "FINISH"

    def _read_states(self, m: Module, p: _Parts, r: _Registers, target: Signal, addr: Signal) -> None:
        """A host read: the element's memory addressed from the request's registers, its data held
        until the ``read_data`` beat is taken; 0 outside the target."""
        b, g = self.build, self.geometry
        C, N, K = b.inputs, b.neurons, b.classes
        T = ReadTarget
        value = Signal(g.read_data_bits)
        m.d.comb += self.read_data.payload.data.eq(value)
        readout_what = {T.READOUT: 0, T.SCORE: 1, T.W_OUT: 2, T.BIAS_OUT: 3}
        limits = {T.MEMBRANE: N, T.READOUT: K, T.SCORE: K, T.W_OUT: N * K, T.BIAS_OUT: K,
                  T.DELAY: N * N if b.delay_kind == "synaptic" else N, T.COUNTER: len(Counter)}
        if b.input_delays is not None:
            limits[T.INPUT_DELAY] = C
        if b.learns:
            limits.update({T.TRACE: b.channels, T.SIGNAL: N})
        inside = Const(0)
        for key, limit in limits.items():
            inside = inside | ((target == key) & (addr < limit))
        counters = {Counter.CYCLES: r.last_cycles, Counter.SYNAPTIC_EVENTS: r.events, Counter.STEPS: r.steps}
        with m.State("READ_ISSUE"):
            m.d.comb += [p.neurons.read_addr.eq(addr), p.neurons.read_signal.eq(target == T.SIGNAL),
                         p.readout.read_addr.eq(addr), p.delays.read_addr.eq(addr),
                         p.delays.read_input.eq(target == T.INPUT_DELAY)]
            if b.learns:
                m.d.comb += p.traces.read_addr.eq(addr)
            with m.If(inside):
                with m.Switch(target):
                    with m.Case(T.MEMBRANE, T.SIGNAL):
                        m.d.comb += p.neurons.read_en.eq(1)
                    for key, what in readout_what.items():
                        with m.Case(key):
                            m.d.comb += [p.readout.read_en.eq(1), p.readout.read_what.eq(what)]
                    with m.Case(T.DELAY, T.INPUT_DELAY):
                        m.d.comb += p.delays.read_en.eq(1)
                    if b.learns:
                        with m.Case(T.TRACE):
                            m.d.comb += p.traces.read_en.eq(1)
                m.next = "READ_WAIT"
            with m.Else():
                m.d.sync += value.eq(0)
                m.next = "READ_RESPONSE"
        with m.State("READ_WAIT"):
            m.next = "READ_RESPONSE"
            with m.Switch(target):
                with m.Case(T.MEMBRANE, T.SIGNAL):
                    m.d.sync += value.eq(p.neurons.read_data)
                with m.Case(*readout_what):
                    m.d.sync += value.eq(p.readout.read_data)
                    with m.If(~p.readout.read_valid):
                        m.next = "READ_WAIT"
                with m.Case(T.DELAY, T.INPUT_DELAY):
                    m.d.sync += value.eq(p.delays.read_data)
                if b.learns:
                    with m.Case(T.TRACE):
                        m.d.sync += value.eq(p.traces.read_data.as_unsigned())
                with m.Case(T.COUNTER):
                    with m.Switch(addr):
                        for key, counter in counters.items():
                            with m.Case(key):
                                m.d.sync += value.eq(counter)
        with m.State("READ_RESPONSE"):
            m.d.comb += self.read_data.valid.eq(1)
            with m.If(self.read_data.ready):
                m.next = "IDLE"
