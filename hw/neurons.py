"""The neurons of the core: ``P`` lanes of LIF datapaths over per-lane membrane and bias memories."""

from __future__ import annotations

import math

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from delrec.build import CoreBuild

from .fixed import clamp, delay_line, sweep
from .neuron import NeuronDatapath
from .ports import RECORD_LATENCY, CoreGeometry

__all__ = ["NeuronArray"]


class NeuronArray(wiring.Component):
    """``N`` LIF neurons on ``P`` lanes: neuron ``b P + l`` is row ``b`` of lane ``l``.

    Per lane, memories of ``B = N / P`` words: the membranes ``v``
    (``v_bits``), the biases (their forward values, ``v_bits``: the hidden
    biases do not learn on chip) and, in a learning core, each neuron's
    surrogate ``psi`` of the last step (:func:`~delrec.arith.surrogate`,
    ``psi_bits + 1``) and learning signal ``L`` (``signal_bits``) side by
    side in one word (written apart, with write enables). Every memory has
    one synchronous read port and one write port.

    ``start`` updates rows ``0..B-1``, one per cycle on which ``advance`` is
    high: the row's reads are issued (stage 0, with ``take_en``/``take_row``
    asking the delay queue for the step's currents, which arrive on
    ``take_current`` the next cycle), the lanes' :class:`NeuronDatapath`
    compute ``h``, the spike and the next membrane, and
    ``1 + NeuronDatapath.LATENCY`` cycles after the issue the row's
    membranes (and ``psi``) are written; the queue is told the row
    (``record_en``, ``record_row``) ``RECORD_LATENCY`` cycles before its
    spikes (``record_spikes``). A step's update takes ``B + 4`` cycles from
    ``start`` to ``done`` when ``advance`` stays high.

    Element access (``addr`` = neuron ``i``: lane ``i mod P``, row ``i / P``),
    never during an update: ``bias_write_*``; ``signal_write_*`` (a learning
    core); ``read_en`` with ``read_addr`` and ``read_signal`` (0: the
    membrane, 1: the learning signal) gives ``read_data`` (raw bits,
    zero-extended) on the next cycle. ``state_row`` reads a whole row's
    ``psi`` and ``L`` (``state_psi``, ``state_signal``, the next cycle).
    ``clear`` zeroes the membranes (and ``psi``, ``L``): ``B`` cycles.

    Parameters
    ----------
    build : CoreBuild
    """

    def __init__(self, build: CoreBuild):
        self._build = build
        g = CoreGeometry(build)
        spec, P, B = build.spec, build.lanes, build.rows
        members = {
            "theta": In(signed(spec.v_bits)),
            "leak": In(unsigned(g.leak_bits)),
            "soft_reset": In(1),
            "start": In(1),
            "advance": In(1),
            "take_en": Out(1),
            "take_row": Out(range(B)),
            "take_current": In(data.ArrayLayout(signed(spec.acc_bits), P)),
            "record_en": Out(1),
            "record_row": Out(range(B)),
            "record_spikes": Out(unsigned(P)),
            "done": Out(1),
            "bias_write_en": In(1),
            "bias_write_addr": In(range(build.neurons)),
            "bias_write_data": In(signed(spec.v_bits)),
            "read_en": In(1),
            "read_addr": In(range(build.neurons)),
            "read_signal": In(1),
            "read_data": Out(unsigned(max(spec.v_bits, spec.signal_bits))),
            "clear": In(1),
            "busy": Out(1),
        }
        if build.learns:
            members.update({
                "signal_write_en": In(1),
                "signal_write_addr": In(range(build.neurons)),
                "signal_write_data": In(signed(spec.signal_bits)),
                "state_row": In(range(B)),
                "state_psi": Out(data.ArrayLayout(unsigned(spec.psi_bits + 1), P)),
                "state_signal": Out(data.ArrayLayout(signed(spec.signal_bits), P)),
            })
        super().__init__(members)

    def elaborate(self, platform):
        build = self._build
        spec, P, B = build.spec, build.lanes, build.rows
        g = CoreGeometry(build)
        lane_bits = g.lane_bits
        learns = build.learns
        m = Module()

        def split(addr):
            return (addr[:lane_bits] if lane_bits else Const(0, 1)), addr[lane_bits:]

        # -- the update pipeline: stage 0 issues a row, the datapaths take its data in stage 1
        latency = NeuronDatapath.LATENCY
        issue_row = Signal(range(B + 1), init=B)   # the next row to issue (B: none left)
        issuing = Signal()
        valids = delay_line(m, issuing, latency + 1, "update_valid")
        rows = delay_line(m, issue_row[:len(self.take_row)], latency + 1, "update_row")
        m.d.comb += [
            issuing.eq((issue_row != B) & self.advance),
            self.take_en.eq(issuing),
            self.take_row.eq(issue_row),
            self.done.eq((issue_row == B) & ~Cat(*valids).any()),
            self.record_en.eq(valids[-1 - RECORD_LATENCY]),
            self.record_row.eq(rows[-1 - RECORD_LATENCY]),
        ]
        # rows left to issue (issue_row != B) as a register: the membrane memory's address takes
        # the issued row from it, not from ``advance`` (the core's control), a LUT RAM's address
        # being on the ECP5's critical path; host reads never come during an update
        updating = Signal()
        with m.If(self.start):
            m.d.sync += [issue_row.eq(0), updating.eq(1)]
        with m.Elif(issuing):
            m.d.sync += issue_row.eq(issue_row + 1)
            with m.If(issue_row == B - 1):
                m.d.sync += updating.eq(0)

        # -- clear
        clearing, clear_row = sweep(m, self.clear, B, "clear")
        m.d.comb += self.busy.eq(clearing)

        def lane_memory(name, shape):
            memory = Memory(shape=shape, depth=B, init=[])
            m.submodules[name] = memory
            return memory.write_port(), memory.read_port()

        read_lane, read_row = split(self.read_addr)
        read_lane_1 = Signal.like(read_lane)
        read_signal_1 = Signal()
        m.d.sync += [read_lane_1.eq(read_lane), read_signal_1.eq(self.read_signal)]
        bias_lane, bias_row = split(self.bias_write_addr)
        spikes = []
        for lane in range(P):
            datapath = NeuronDatapath(spec, g.leak_bits)
            m.submodules[f"neuron_{lane}"] = datapath
            membrane_write, membrane_read = lane_memory(f"membrane_{lane}", signed(spec.v_bits))
            bias_write, bias_read = lane_memory(f"bias_{lane}", signed(spec.v_bits))
            m.d.comb += [
                membrane_read.addr.eq(Mux(updating, issue_row, read_row)),
                bias_read.addr.eq(issue_row),
                datapath.membrane.eq(membrane_read.data),
                datapath.current.eq(self.take_current[lane]),
                datapath.bias.eq(bias_read.data),
                datapath.theta.eq(self.theta),
                datapath.leak.eq(self.leak),
                datapath.soft_reset.eq(self.soft_reset),
                bias_write.en.eq(self.bias_write_en & (bias_lane == lane)),
                bias_write.addr.eq(bias_row),
                bias_write.data.eq(self.bias_write_data),
            ]
            writing = valids[-1]
            with m.If(clearing):
                m.d.comb += [membrane_write.en.eq(1), membrane_write.addr.eq(clear_row),
                             membrane_write.data.eq(0)]
            with m.Elif(writing):
                m.d.comb += [membrane_write.en.eq(1), membrane_write.addr.eq(rows[-1]),
                             membrane_write.data.eq(datapath.membrane_next)]
            spikes.append(datapath.spike)
            read_value = membrane_read.data.as_unsigned()
            if learns:
                read_value = self._learning_lane(m, lane, datapath, clearing, clear_row, writing, rows[-1],
                                                 read_row, read_signal_1, read_value)
            with m.If(read_lane_1 == lane):
                m.d.comb += self.read_data.eq(read_value)
        m.d.comb += self.record_spikes.eq(Cat(*spikes))
        return m

    def _learning_lane(self, m, lane, datapath, clearing, clear_row, writing, written_row, read_row,
                       read_signal, membrane_value):
        """One lane's ``psi`` (written with the membrane) and ``L``, one word; the lane's read value."""
        build = self._build
        spec = build.spec
        lane_bits = (build.lanes - 1).bit_length()
        psi_bits, signal_bits = spec.psi_bits + 1, spec.signal_bits
        granule = math.gcd(psi_bits, signal_bits)       # the write enables' width
        state = Memory(shape=unsigned(psi_bits + signal_bits), depth=build.rows, init=[])
        m.submodules[f"state_{lane}"] = state
        write = state.write_port(granularity=granule)
        read = state.read_port()
        psi_enable = Const((1 << (psi_bits // granule)) - 1, len(write.en))
        signal_enable = Const(((1 << (signal_bits // granule)) - 1) << (psi_bits // granule), len(write.en))
        top = 1 << spec.psi_bits
        distance = Signal(signed(spec.v_bits + 2), name=f"distance_{lane}")   # |h - theta|
        m.d.comb += distance.eq(Mux(datapath.charge >= self.theta, datapath.charge - self.theta,
                                    self.theta - datapath.charge))
        psi = clamp(top - distance, 0, top)
        signal_lane = self.signal_write_addr[:lane_bits] if lane_bits else Const(0, 1)
        with m.If(clearing):
            m.d.comb += [write.en.eq(psi_enable | signal_enable), write.addr.eq(clear_row), write.data.eq(0)]
        with m.Elif(writing):
            m.d.comb += [write.en.eq(psi_enable), write.addr.eq(written_row), write.data.eq(psi)]
        with m.Elif(self.signal_write_en & (signal_lane == lane)):
            m.d.comb += [write.en.eq(signal_enable), write.addr.eq(self.signal_write_addr[lane_bits:]),
                         write.data.eq(Cat(Const(0, psi_bits), self.signal_write_data))]
        m.d.comb += [read.addr.eq(Mux(self.read_en, read_row, self.state_row)),
                     self.state_psi[lane].eq(read.data[:psi_bits]),
                     self.state_signal[lane].eq(read.data[psi_bits:])]
        return Mux(read_signal, read.data[psi_bits:], membrane_value)
