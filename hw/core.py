"""The time-multiplexed LIF inference core."""

from __future__ import annotations

from typing import NamedTuple

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from delrec.build import CoreBuild

from .banked import BankedMemory
from .fixed import check_bank_bits, delay_line
from .history import SpikeHistory
from .neuron import NeuronDatapath
from .ports import (COUNTER_BITS, PROBE_LATENCY, RECORD_LATENCY, ConfigRegister, CoreGeometry,
                    Counter, ReadTarget, WriteTarget, input_layout, read_data_layout, read_layout,
                    spike_layout, write_layout)
from .readout import Readout
from .ring import FutureInputRing

__all__ = ["InferenceCore", "WEIGHT_READ_LATENCY", "WEIGHT_WORD_BITS", "weights_per_word"]

#: Cycles from a weight memory's read address to its weight (:class:`~delrec.hw.banked.BankedMemory`).
WEIGHT_READ_LATENCY = BankedMemory.LATENCY

#: Word width the input and recurrent weights are packed into: the iCE40
#: SPRAM's (16K x 16) and the iCE40 block RAM's widest mode (256 x 16).
WEIGHT_WORD_BITS = 16


def weights_per_word(weight_bits: int) -> int:
    """Weights packed into one word of the input and recurrent weight memories.

    The largest power of two whose weights fit :data:`WEIGHT_WORD_BITS` bits
    (1 for weights wider than half a word): two 8-bit weights per 16-bit word,
    so that the SHD-size weights fit the UP5K's four SPRAMs.
    """
    count = 1
    while 2 * count * weight_bits <= WEIGHT_WORD_BITS:
        count *= 2
    return count


class _WeightLane(NamedTuple):
    """One lane of a packed weight memory (see ``packed_weight_memory`` in the core)."""

    write_en: Signal
    write_index: Signal
    write_data: Signal
    read_index: Signal
    weight: Signal       # weight ``read_index`` of the previous cycle


class InferenceCore(wiring.Component):
    """``C`` input channels -> ``N`` recurrent LIF neurons with delays -> ``K`` leaky readouts.

    Runs one time step per ``last=1`` input beat, bit-exact with
    :func:`delrec.arith.neuron_update` and :func:`delrec.arith.readout_update`
    in the order of :class:`delrec.arith.CoreSpec`. The ``N`` neurons are
    time-multiplexed over ``P`` lanes: lane ``l`` owns neurons ``b*P + l``
    (row ``b`` of ``B = N / P``), and every per-neuron memory is one
    :class:`~amaranth.lib.memory.Memory` per lane, so a parameter write
    touches one element and never needs a read-modify-write. All memories
    have one synchronous read port and one write port (block RAM).

    The two big weight memories are built for single-port RAM (the iCE40
    UP5K's SPRAM): their read and write ports share one address (host
    writes happen only between steps, weight reads only during them) and
    they pack :func:`weights_per_word` weights into one word of up to
    :data:`WEIGHT_WORD_BITS` bits, written with a granularity of one
    weight (a byte enable, no read-modify-write).

    Memories per lane: input weights ``C*B x weight_bits`` (weight ``c*B + b``),
    recurrent weights ``N*B x weight_bits`` (weight ``j*B + b``), delays
    ``B`` (axonal, word ``b``) or ``N*B`` (synaptic, word ``j*B + b``) ``x
    delay_bits``, biases and membranes ``B x v_bits``; the delay queue's
    (:class:`~delrec.hw.ring.FutureInputRing` or
    :class:`~delrec.hw.history.SpikeHistory`); the readout's
    (:class:`~delrec.hw.readout.Readout`).

    Cycles (simple FSM control; the read-modify-writes are pipelined, one
    row of ``P`` neurons per cycle; the spike scans read rows ahead of the
    row being handled, :data:`~delrec.hw.ports.PROBE_LATENCY` cycles):

    * input, before the step: ``B + 1`` per event (one row per cycle);
    * the step, from the ``last=1`` input beat to the ``last=1`` spike beat
      (the ``CYCLES`` counter), with a spike consumer that never stalls.
      A silent step costs exactly:

      - history queue only, recurrent scan: ``B + 2`` (one row of ``P``
        spike bits per cycle, ``B + PROBE_LATENCY``);
      - neuron update: ``B + 5`` (``B + 2 +``
        :attr:`~delrec.hw.neuron.NeuronDatapath.LATENCY`);
      - spike scan: ``B + 3``;
      - readout update and end-of-step beat: ``K + 6`` (``K + 1 +``
        :data:`~delrec.hw.readout.UPDATE_STAGES`);

      that is ``2B + K + 14`` with the ring, ``3B + K + 16`` with the
      history. Each spike adds at least one cycle and at most ``B + 3``
      (``B +`` :data:`WEIGHT_READ_LATENCY`) per arriving presynaptic spike
      (history: its recurrent fan-out) and ``max(B + 3, K + 2)`` (ring: the
      fan-out into the future slots and the ``K`` readout accumulations side
      by side) or ``K + 2`` (history) per emitted spike, ``+ 3`` once for a
      fan-out that must drain (the ring also waits for the last input
      event's): less when the rows after a spike are scanned while its
      fan-out runs.

    Parameters
    ----------
    build : CoreBuild
        The configuration: ``C``, ``N``, ``K``, the spec (widths, delay
        depth ``D = 2^delay_bits``, leak mode), ``P`` lanes, the delay kind
        and the queue (future-input ring, ``D x N`` accumulators, or spike
        history, ``N x D`` bits, axonal delays only).
    weight_bank_bits : int, optional
        Split the input, recurrent and readout weight memories into banks of
        at most this many bits (a power of two; see
        :func:`~delrec.hw.fixed.bank_words`), each bank's word registered
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
        ``last=1`` beat once the readout is updated.
    write : In(stream.Signature(write_layout))
        ``target`` (:class:`~delrec.hw.ports.WriteTarget`), ``addr``,
        ``data`` (two's complement masked to the element width); ready only
        between steps. Writes to addresses outside a target are dropped.
    read : In(stream.Signature(read_layout))
        ``target`` (:class:`~delrec.hw.ports.ReadTarget`), ``addr``; ready
        only between steps.
    read_data : Out(stream.Signature(read_data_layout))
        ``data``: the raw bits of the element read, zero-extended.
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

    def elaborate(self, platform):
        g, spec = self.geometry, self.spec
        C, N, K, P, B = g.inputs, g.neurons, g.classes, g.lanes, g.rows
        synaptic = g.delay_kind == "synaptic"
        history = self.queue_kind == "history"
        m = Module()

        # -- sub-components ------------------------------------------------------------
        if history:
            m.submodules.queue = queue = SpikeHistory(N, P, spec)
        else:
            m.submodules.queue = queue = FutureInputRing(N, P, spec)
        m.submodules.readout = readout = Readout(N, K, spec, g.leak_bits,
                                                 weight_bank_bits=self.weight_bank_bits)

        # -- configuration and counters ---------------------------------------------------
        theta = Signal(signed(spec.v_bits))
        leak = Signal(g.leak_bits)
        readout_leak = Signal(g.leak_bits)
        soft_reset = Signal()
        slot = Signal(spec.delay_bits)              # t mod D
        steps = Signal(COUNTER_BITS)
        synaptic_events = Signal(COUNTER_BITS)
        step_cycles = Signal(COUNTER_BITS)          # running count of the step in progress
        last_step_cycles = Signal(COUNTER_BITS)
        step_open = Signal()                        # between a step's first input beat and its end
        step_running = Signal()                     # between the last=1 input beat and the end
        m.d.comb += [queue.slot.eq(slot), readout.leak.eq(readout_leak)]
        with m.If(step_running):
            m.d.sync += step_cycles.eq(step_cycles + 1)

        # -- per-lane memories ---------------------------------------------------------------
        def lane_memory(name, shape, depth):
            ports = []
            for lane in range(P):
                memory = Memory(shape=shape, depth=depth, init=[])
                m.submodules[f"{name}_{lane}"] = memory
                write = memory.write_port()
                ports.append((write, memory.read_port()))
            return ports

        pack = weights_per_word(spec.weight_bits)
        pack_bits = pack.bit_length() - 1

        def packed_weight_memory(name, count):
            """Per lane: ``count`` weights, ``pack`` per word; one address for reads and writes.

            Returns one :class:`_WeightLane` per lane: drive ``write_*`` to store
            weight ``write_index`` (written one cycle later, from registers);
            otherwise weight ``read_index`` is read and appears on ``weight``
            :data:`WEIGHT_READ_LATENCY` cycles later (a
            :class:`~delrec.hw.banked.BankedMemory`, in banks of
            ``weight_bank_bits``). The read and the write share the address
            (single-port RAM), which comes straight from registers.
            """
            words = -(-count // pack)
            lanes = []
            for lane in range(P):
                write_en = Signal(name=f"{name}_{lane}_write_en")
                write_index = Signal(range(count), name=f"{name}_{lane}_write_index")
                write_data = Signal(spec.weight_bits, name=f"{name}_{lane}_write_data")
                read_index = Signal(range(count), name=f"{name}_{lane}_read_index")
                weight = Signal(signed(spec.weight_bits), name=f"{name}_{lane}_weight")
                writing = Signal(name=f"{name}_{lane}_writing")        # the write, registered
                writing_index = Signal.like(write_index, name=f"{name}_{lane}_writing_index")
                writing_data = Signal.like(write_data, name=f"{name}_{lane}_writing_data")
                m.d.sync += [writing.eq(write_en), writing_index.eq(write_index),
                             writing_data.eq(write_data)]
                memory = BankedMemory(shape=unsigned(pack * spec.weight_bits), depth=words,
                                      bank_bits=self.weight_bank_bits, granularity=spec.weight_bits)
                m.submodules[f"{name}_{lane}"] = memory
                word = Signal(range(words), name=f"{name}_{lane}_word")  # the shared address
                m.d.comb += [
                    word.eq(Mux(writing, writing_index >> pack_bits, read_index >> pack_bits)),
                    memory.write_addr.eq(word),
                    memory.read_addr.eq(word),
                    memory.read_en.eq(~writing),
                    memory.write_data.eq(Cat(*[writing_data] * pack)),
                    memory.write_en.eq(Mux(writing, 1 << writing_index[:pack_bits], 0) if pack > 1
                                       else writing),
                ]
                if pack > 1:   # the weight's place in its word, delayed as the word is
                    slots = delay_line(m, read_index[:pack_bits], BankedMemory.LATENCY,
                                       f"{name}_{lane}_slot")
                    m.d.comb += weight.eq(memory.read_data.word_select(slots[-1], spec.weight_bits))
                else:
                    m.d.comb += weight.eq(memory.read_data)
                lanes.append(_WeightLane(write_en, write_index, write_data, read_index, weight))
            return lanes

        w_in = packed_weight_memory("w_in", C * B)
        w_rec = packed_weight_memory("w_rec", N * B)
        delays = lane_memory("delay", unsigned(spec.delay_bits), g.delay_depth)
        biases = lane_memory("bias", signed(spec.v_bits), B)
        membranes = lane_memory("membrane", signed(spec.v_bits), B)

        # -- host writes -----------------------------------------------------------------------
        request = self.write.payload
        write_accept = Signal()
        m.d.comb += write_accept.eq(self.write.valid & self.write.ready)
        lane_bits = g.lane_bits
        addr_lane = request.addr[:lane_bits] if lane_bits else Const(0, 1)
        addr_row = request.addr[lane_bits:]

        def host_write(ports, target, limit, bits):
            for lane, (write, _) in enumerate(ports):
                with m.If(write_accept & (request.target == target) & (request.addr < limit)
                          & (addr_lane == lane)):
                    m.d.comb += [write.en.eq(1), write.addr.eq(addr_row), write.data.eq(request.data[:bits])]

        def host_weight_write(lanes, target, limit):
            for lane, port in enumerate(lanes):
                m.d.comb += [port.write_index.eq(addr_row),
                             port.write_data.eq(request.data[:spec.weight_bits]),
                             port.write_en.eq(write_accept & (request.target == target)
                                              & (request.addr < limit) & (addr_lane == lane))]

        host_weight_write(w_in, WriteTarget.W_IN, C * N)
        host_weight_write(w_rec, WriteTarget.W_REC, N * N)
        host_write(delays, WriteTarget.DELAY, N * N if synaptic else N, spec.delay_bits)
        host_write(biases, WriteTarget.BIAS, N, spec.v_bits)
        m.d.comb += [
            readout.weight_write_en.eq(write_accept & (request.target == WriteTarget.W_OUT)
                                       & (request.addr < N * K)),
            readout.weight_write_addr.eq(request.addr),
            readout.weight_write_data.eq(request.data[:spec.weight_bits]),
            readout.bias_write_en.eq(write_accept & (request.target == WriteTarget.BIAS_OUT)
                                     & (request.addr < K)),
            readout.bias_write_addr.eq(request.addr),
            readout.bias_write_data.eq(request.data[:spec.readout_bits]),
        ]
        with m.If(write_accept & (request.target == WriteTarget.CONFIG)):
            with m.Switch(request.addr):
                with m.Case(ConfigRegister.THETA):
                    m.d.sync += theta.eq(request.data[:spec.v_bits])
                with m.Case(ConfigRegister.LEAK):
                    m.d.sync += leak.eq(request.data[:g.leak_bits])
                with m.Case(ConfigRegister.READOUT_LEAK):
                    m.d.sync += readout_leak.eq(request.data[:g.leak_bits])
                with m.Case(ConfigRegister.RESET):
                    m.d.sync += soft_reset.eq(request.data[0])

        # -- fan-out engine: one row of one weight column into the queue per cycle ------------
        fan_active = Signal()                       # stage 0: weight (and delay) reads issued
        fan_row = Signal(range(B))
        fan_addr = Signal(range(max(C, N) * B))     # weight fan_base + fan_row (a counter)
        fan_recurrent = Signal()
        fan_offset = Signal(spec.delay_bits)        # axonal: (1 + d_j) mod D
        fan_start = Signal()
        fan_start_base = Signal.like(fan_addr)
        fan_start_recurrent = Signal()
        fan_start_offset = Signal.like(fan_offset)
        # stages 1 .. WEIGHT_READ_LATENCY - 1: the words read, being registered; then delivery
        fetching = [Signal(name=f"fetching_{n}") for n in range(1, WEIGHT_READ_LATENCY)]
        fetch_rows = [Signal.like(fan_row, name=f"fetch_row_{n}") for n in range(1, WEIGHT_READ_LATENCY)]
        fetch_recurrent = [Signal(name=f"fetch_recurrent_{n}") for n in range(1, WEIGHT_READ_LATENCY)]
        fetch_offsets = [Signal.like(fan_offset, name=f"fetch_offset_{n}")
                         for n in range(1, WEIGHT_READ_LATENCY)]
        delivering = Signal()                       # weights (and delays) registered
        deliver_row = Signal.like(fan_row)
        deliver_recurrent = Signal()
        deliver_offset = Signal.like(fan_offset)    # axonal only
        fan_last_issue = Signal()
        fan_done = Signal()

        m.d.comb += [
            fan_last_issue.eq(fan_active & (fan_row == B - 1)),
            fan_done.eq(~fan_active & ~Cat(*fetching).any() & ~delivering),
        ]
        for chain, first, last in ((fetching, fan_active, delivering), (fetch_rows, fan_row, deliver_row),
                                   (fetch_recurrent, fan_recurrent, deliver_recurrent),
                                   (fetch_offsets, fan_offset, deliver_offset)):
            m.d.sync += [stage.eq(prev) for stage, prev in zip(chain + [last], [first] + chain)]
        with m.If(fan_active):
            m.d.sync += [fan_row.eq(fan_row + 1), fan_addr.eq(fan_addr + 1)]
            with m.If(fan_last_issue):
                m.d.sync += fan_active.eq(0)
        with m.If(fan_start):
            m.d.sync += [fan_active.eq(1), fan_row.eq(0), fan_addr.eq(fan_start_base),
                         fan_recurrent.eq(fan_start_recurrent), fan_offset.eq(fan_start_offset)]
        # weight accumulations: N per fanned-out column, K per spike into the readout
        m.d.sync += synaptic_events.eq(synaptic_events + Mux(fan_start, N, 0)
                                       + Mux(readout.accumulate, K, 0))

        weight_addr = fan_addr
        m.d.comb += [queue.deliver_en.eq(delivering), queue.deliver_row.eq(deliver_row)]
        for lane in range(P):
            m.d.comb += [
                w_in[lane].read_index.eq(weight_addr),
                w_rec[lane].read_index.eq(weight_addr),
                queue.deliver_weight[lane].eq(Mux(deliver_recurrent, w_rec[lane].weight,
                                                  w_in[lane].weight)),
            ]
            if synaptic:   # the connection's delay, read beside its weight and registered
                fetched_delay = delay_line(m, delays[lane][1].data, WEIGHT_READ_LATENCY - 1,
                                           f"fetched_delay_{lane}")[-1]
                m.d.comb += [
                    delays[lane][1].addr.eq(weight_addr),
                    queue.deliver_offset[lane].eq(
                        Mux(deliver_recurrent, (1 + fetched_delay)[:spec.delay_bits], 0)),
                ]
            else:
                m.d.comb += queue.deliver_offset[lane].eq(Mux(deliver_recurrent, deliver_offset, 0))

        # -- row scanner: one row of P spike bits per cycle, then one spike at a time ----------
        # A row read reaches the scanner PROBE_LATENCY cycles after it is issued (the queue
        # registers it), with the row's axonal delays registered alongside. Rows with spikes
        # wait in a small queue whose head is the row being handled; a read is issued only
        # when the queue will have room for it, so empty rows stream at one per cycle and no
        # path runs from a memory's output into the control.
        depth = PROBE_LATENCY + 1                   # rows that may wait, the handled one first
        scan_issuing = Signal()                     # rows left to read
        scan_next = Signal(range(B))                # the next row to read (0 between scans)
        scan_load = Signal()                        # read row `scan_next` this cycle
        flight = [Signal(name=f"probe_valid_{n}") for n in range(PROBE_LATENCY)]
        flight_rows = [Signal(range(B), name=f"probe_row_{n}") for n in range(PROBE_LATENCY)]
        probed_delays = [Signal(spec.delay_bits, name=f"probe_delay_{lane}") for lane in range(P)]
        wait_bits = [Signal(P, name=f"wait_bits_{n}") for n in range(depth)]
        wait_rows = [Signal(range(B), name=f"wait_row_{n}") for n in range(depth)]
        wait_delays = [[Signal(spec.delay_bits, name=f"wait_delay_{n}_{lane}") for lane in range(P)]
                       for n in range(depth)]
        waiting = Signal(range(depth + 1))          # rows in the wait queue
        arrive = Signal()                           # a probed row with spikes joins the queue
        pop = Signal()                              # the head row is done
        held_pending = wait_bits[0]                 # spikes of the head row not handled yet
        scan_done = Signal()                        # every row read and every spike handled
        pick_lane = Signal(range(P))
        pick_neuron = Signal(range(N))
        pick_delay = Signal(spec.delay_bits)        # axonal delay of the picked neuron
        pick = Signal()                             # the control takes the picked spike
        in_flight = 0
        for valid in flight:
            in_flight = in_flight + valid
        m.d.comb += [
            queue.probe_en.eq(scan_load),
            queue.probe_row.eq(scan_next),          # from a register: the address never waits
            arrive.eq(flight[-1] & (queue.probe_spikes != 0)),
            pop.eq((waiting != 0) & (wait_bits[0] == 0)),
            scan_done.eq(~scan_issuing & ~Cat(*flight).any() & (waiting == 0)),
        ]
        m.d.sync += [flight[0].eq(scan_load), flight_rows[0].eq(scan_next)]
        m.d.sync += [flight[n].eq(flight[n - 1]) for n in range(1, PROBE_LATENCY)]
        m.d.sync += [flight_rows[n].eq(flight_rows[n - 1]) for n in range(1, PROBE_LATENCY)]
        with m.If(scan_issuing & (waiting + in_flight - pop < depth)):
            m.d.comb += scan_load.eq(1)
            m.d.sync += scan_next.eq(scan_next + 1)
            with m.If(scan_next == B - 1):
                m.d.sync += [scan_issuing.eq(0), scan_next.eq(0)]
        push_at = (waiting - pop)[:len(waiting)]
        for n in range(depth):
            with m.If(arrive & (push_at == n)):
                m.d.sync += [wait_bits[n].eq(queue.probe_spikes), wait_rows[n].eq(flight_rows[-1])]
                m.d.sync += [w.eq(d) for w, d in zip(wait_delays[n], probed_delays)]
            with m.Elif(pop):
                if n + 1 < depth:
                    m.d.sync += [wait_bits[n].eq(wait_bits[n + 1]), wait_rows[n].eq(wait_rows[n + 1])]
                    m.d.sync += [w.eq(d) for w, d in zip(wait_delays[n], wait_delays[n + 1])]
                else:
                    m.d.sync += wait_bits[n].eq(0)
        m.d.sync += waiting.eq(waiting + arrive - pop)
        for lane in reversed(range(P)):  # the lowest pending lane wins
            with m.If(held_pending[lane]):
                m.d.comb += [pick_lane.eq(lane), pick_delay.eq(wait_delays[0][lane])]
        m.d.comb += pick_neuron.eq(Cat(pick_lane[:lane_bits], wait_rows[0]) if lane_bits else wait_rows[0])
        m.d.comb += readout.neuron.eq(pick_neuron)   # steady: the readout registers its address
        with m.If(pick):   # never with a pop (the head has spikes) nor a push into the head
            m.d.sync += wait_bits[0].eq(held_pending & ~(Const(1, 1) << pick_lane)[:P])
        if not synaptic:
            for lane in range(P):
                m.d.comb += delays[lane][1].addr.eq(scan_next)   # always enabled
                m.d.sync += probed_delays[lane].eq(delays[lane][1].data)

        def scan_begin():   # row 0 (scan_next is 0 between scans)
            m.d.comb += scan_load.eq(1)
            if B > 1:
                m.d.sync += [scan_next.eq(1), scan_issuing.eq(1)]

        # -- neuron update pipeline ------------------------------------------------------------
        # stage 0 issues the reads of row `update_row`; the datapath takes the read data in
        # stage 1 and gives the row's spikes and membranes LATENCY cycles later, when they are
        # written; the queue is told which row RECORD_LATENCY cycles before its spikes arrive.
        latency = NeuronDatapath.LATENCY
        update_row = Signal(range(B + 1))           # stage 0: reads issued for this row
        in_flight = [Signal(name=f"update_valid_{n}") for n in range(1, latency + 2)]
        flight_rows = [Signal(range(B), name=f"update_row_{n}") for n in range(1, latency + 2)]
        updating = Signal()                         # any row in stages 1 ..
        updated_row = flight_rows[-1]               # the row written this cycle
        for n in range(1, latency + 1):
            m.d.sync += [in_flight[n].eq(in_flight[n - 1]), flight_rows[n].eq(flight_rows[n - 1])]
        m.d.sync += in_flight[0].eq(0)
        m.d.comb += [
            updating.eq(Cat(*in_flight).any()),
            queue.take_row.eq(update_row),
            queue.record_en.eq(in_flight[-1 - RECORD_LATENCY]),
            queue.record_row.eq(flight_rows[-1 - RECORD_LATENCY]),
        ]
        spike_bits = []
        for lane in range(P):
            datapath = NeuronDatapath(spec, g.leak_bits)
            m.submodules[f"neuron_{lane}"] = datapath
            membrane_write, membrane_read = membranes[lane]
            bias_read = biases[lane][1]
            m.d.comb += [
                bias_read.addr.eq(update_row),
                datapath.membrane.eq(membrane_read.data),
                datapath.current.eq(queue.take_current[lane]),
                datapath.bias.eq(bias_read.data),
                datapath.theta.eq(theta),
                datapath.leak.eq(leak),
                datapath.soft_reset.eq(soft_reset),
            ]
            with m.If(in_flight[-1]):
                m.d.comb += [membrane_write.en.eq(1), membrane_write.addr.eq(updated_row),
                             membrane_write.data.eq(datapath.membrane_next)]
            spike_bits.append(datapath.spike)
        m.d.comb += queue.record_spikes.eq(Cat(*spike_bits))

        # -- host reads ------------------------------------------------------------------------
        read_request = self.read.payload
        read_target = Signal(ReadTarget)
        read_addr = Signal.like(read_request.addr)
        read_value = Signal(g.read_data_bits)
        read_lane = read_addr[:lane_bits] if lane_bits else Const(0, 1)
        m.d.comb += [
            self.read_data.payload.data.eq(read_value),
            readout.read_addr.eq(read_addr),     # registered: no path from the host into memories
            readout.read_score.eq(read_target == ReadTarget.SCORE),
        ]
        for lane in range(P):
            m.d.comb += membranes[lane][1].addr.eq(update_row)   # the update's row, or a read's

        # -- spike output register -------------------------------------------------------------
        spike_valid = Signal()
        spike_neuron = Signal.like(self.spikes.payload.neuron)
        spike_last = Signal()
        m.d.comb += [
            self.spikes.valid.eq(spike_valid),
            self.spikes.payload.neuron.eq(spike_neuron),
            self.spikes.payload.last.eq(spike_last),
        ]
        spike_slot_free = Signal()
        m.d.comb += spike_slot_free.eq(~spike_valid | self.spikes.ready)
        with m.If(self.spikes.valid & self.spikes.ready):
            m.d.sync += spike_valid.eq(0)

        # -- control -----------------------------------------------------------------------------
        clear_row = Signal(range(B + 1))
        inputs = self.inputs.payload
        with m.FSM(name="control") as control:
            with m.State("IDLE"):
                m.d.comb += [
                    self.write.ready.eq(~step_open),
                    self.read.ready.eq(~step_open & ~self.write.valid),
                    self.inputs.ready.eq(step_open | (~self.write.valid & ~self.read.valid)),
                ]
                with m.If(write_accept & (request.target == WriteTarget.CLEAR)):
                    m.d.comb += [queue.clear.eq(1), readout.clear.eq(1)]
                    m.d.sync += clear_row.eq(0)
                    m.next = "CLEAR"
                with m.Elif(self.read.valid & self.read.ready):
                    # update_row, idle, addresses the membranes: the row of the request
                    m.d.sync += [read_target.eq(read_request.target), read_addr.eq(read_request.addr),
                                 update_row.eq(read_request.addr[lane_bits:])]
                    m.next = "READ_ADDRESS"
                with m.Elif(self.inputs.valid & self.inputs.ready):
                    m.d.sync += step_open.eq(1)
                    with m.If(inputs.last):
                        m.d.sync += [step_running.eq(1), step_cycles.eq(0), update_row.eq(0)]
                        if history:
                            scan_begin()
                            m.next = "SCAN_PICK"
                        else:
                            m.next = "UPDATE"
                    with m.Elif(inputs.channel < C):
                        m.d.comb += [fan_start.eq(1), fan_start_base.eq(inputs.channel * B),
                                     fan_start_recurrent.eq(0)]
                        m.next = "INPUT"

            with m.State("INPUT"):
                with m.If(fan_last_issue | ~fan_active):
                    m.next = "IDLE"

            with m.State("READ_ADDRESS"):   # the request's registered address to the memories
                m.d.comb += readout.read_en.eq(1)
                m.next = "READ"

            with m.State("READ"):
                with m.Switch(read_target):
                    with m.Case(ReadTarget.MEMBRANE):
                        for lane in range(P):
                            with m.If(read_lane == lane):
                                m.d.sync += read_value.eq(membranes[lane][1].data.as_unsigned())
                    with m.Case(ReadTarget.READOUT, ReadTarget.SCORE):
                        m.d.sync += read_value.eq(readout.read_data)
                    with m.Case(ReadTarget.COUNTER):
                        with m.Switch(read_addr):
                            with m.Case(Counter.CYCLES):
                                m.d.sync += read_value.eq(last_step_cycles)
                            with m.Case(Counter.SYNAPTIC_EVENTS):
                                m.d.sync += read_value.eq(synaptic_events)
                            with m.Case(Counter.STEPS):
                                m.d.sync += read_value.eq(steps)
                            with m.Default():
                                m.d.sync += read_value.eq(0)
                m.next = "READ_RESPONSE"

            with m.State("READ_RESPONSE"):
                m.d.comb += self.read_data.valid.eq(1)
                with m.If(self.read_data.ready):
                    m.next = "IDLE"

            with m.State("CLEAR"):
                with m.If(clear_row != B):
                    for lane in range(P):
                        m.d.comb += [membranes[lane][0].en.eq(1), membranes[lane][0].addr.eq(clear_row),
                                     membranes[lane][0].data.eq(0)]
                    m.d.sync += clear_row.eq(clear_row + 1)
                with m.Elif(~queue.busy & ~readout.busy):
                    m.d.sync += [slot.eq(0), steps.eq(0), synaptic_events.eq(0),
                                 last_step_cycles.eq(0)]
                    m.next = "IDLE"

            # history queue: deliver the recurrent spikes due now (age 1 + d_j) into the currents
            with m.State("SCAN_PICK"):
                with m.If(held_pending != 0):
                    m.d.comb += [fan_start.eq(1), fan_start_base.eq(pick_neuron * B),
                                 fan_start_recurrent.eq(1), pick.eq(1)]
                    m.next = "SCAN_FANOUT"
                with m.Elif(scan_done & fan_done):
                    m.next = "UPDATE"

            with m.State("SCAN_FANOUT"):
                with m.If(fan_last_issue):
                    m.next = "SCAN_PICK"

            with m.State("UPDATE"):   # once the last input's fan-out has drained
                with m.If(update_row != B):
                    with m.If(fan_done):
                        m.d.comb += queue.take_en.eq(1)
                        m.d.sync += [update_row.eq(update_row + 1), in_flight[0].eq(1),
                                     flight_rows[0].eq(update_row)]
                with m.Elif(~updating):
                    scan_begin()
                    m.next = "EMIT_PICK"

            # every spike of the step, in order: output beat, readout, ring fan-out
            with m.State("EMIT_PICK"):
                with m.If(held_pending != 0):
                    with m.If(spike_slot_free & readout.ready):
                        m.d.sync += [spike_valid.eq(1), spike_neuron.eq(pick_neuron), spike_last.eq(0)]
                        m.d.comb += [readout.accumulate.eq(1), pick.eq(1)]
                        if not history:
                            m.d.comb += [fan_start.eq(1), fan_start_base.eq(pick_neuron * B),
                                         fan_start_recurrent.eq(1),
                                         fan_start_offset.eq((1 + pick_delay)[:spec.delay_bits])]
                        m.next = "EMIT_WAIT"
                with m.Elif(scan_done & fan_done & readout.ready):
                    m.d.comb += readout.update.eq(1)
                    m.next = "READOUT"

            with m.State("EMIT_WAIT"):
                with m.If((fan_last_issue | ~fan_active) & readout.ready):
                    m.next = "EMIT_PICK"

            with m.State("READOUT"):
                with m.If(~readout.busy & spike_slot_free):
                    m.d.sync += [spike_valid.eq(1), spike_last.eq(1)]
                    m.next = "FINISH"

            with m.State("FINISH"):
                with m.If(self.spikes.ready):
                    m.d.sync += [
                        slot.eq(slot + 1), steps.eq(steps + 1), step_open.eq(0), step_running.eq(0),
                        last_step_cycles.eq(step_cycles + 1),
                    ]
                    m.next = "IDLE"

        if history:   # the recurrent scan probes age 1 + d_j; the emit scan age 0 (the step's spikes)
            with m.If(control.ongoing("SCAN_PICK") | control.ongoing("SCAN_FANOUT")):
                for lane in range(P):
                    m.d.comb += queue.probe_age[lane].eq((1 + delays[lane][1].data)[:spec.delay_bits])
        m.d.comb += self.busy.eq(~control.ongoing("IDLE") | step_open)
        return m
