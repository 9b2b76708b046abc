"""The delay memories: recurrent delays per lane, input delays per channel."""

from __future__ import annotations

from amaranth.hdl import Const, Module, Mux, Signal, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from delrec.build import CoreBuild

from .fixed import rshift_round
from .ports import CoreGeometry

__all__ = ["DelayMemory"]


class DelayMemory(wiring.Component):
    """The core's delays: per lane the recurrent ones, and (input delays) one memory for the inputs.

    Recurrent delays are stored as the core's other per-lane memories:
    axonal ``d_j`` at row ``j / P`` of lane ``j mod P``; synaptic ``d_ij``
    beside its weight, row ``j B + i / P`` of lane ``i mod P``. A learning
    core stores them with their fraction (``delay_store_bits``); the
    forward pass reads :func:`~delrec.arith.forward_delay` of them.

    ``row`` reads one row of every lane: ``row_delay`` (forward, integer)
    on the next cycle. ``read_en`` with ``read_input`` and ``read_addr``
    (the element address of :class:`~delrec.hw.ports.WriteTarget` ``DELAY``
    or ``INPUT_DELAY``) reads one stored delay instead: ``read_data`` and
    its ``read_forward`` on the next cycle (the element's row replaces
    ``row`` on that cycle). ``write_en`` with ``write_input``,
    ``write_addr``, ``write_data`` stores one (an address outside the
    target is the caller's to refuse).

    Parameters
    ----------
    build : CoreBuild
    """

    def __init__(self, build: CoreBuild):
        self._build = build
        g = CoreGeometry(build)
        P = build.lanes
        stored = unsigned(g.delay_store_bits)
        addr = range(max(g.delay_depth * P, build.inputs))
        super().__init__({
            "row": In(range(g.delay_depth)),
            "row_delay": Out(data.ArrayLayout(unsigned(build.spec.delay_bits), P)),
            "read_en": In(1),
            "read_input": In(1),
            "read_addr": In(addr),
            "read_data": Out(stored),
            "read_forward": Out(unsigned(build.spec.delay_bits)),
            "write_en": In(1),
            "write_input": In(1),
            "write_addr": In(addr),
            "write_data": In(stored),
        })

    def elaborate(self, platform):
        build = self._build
        g = CoreGeometry(build)
        P, lane_bits = build.lanes, g.lane_bits
        frac = build.spec.delay_frac_bits if build.learns else 0
        delay_bits = build.spec.delay_bits
        m = Module()

        def forward(stored):
            return rshift_round(stored, frac)[:delay_bits]

        read_lane = self.read_addr[:lane_bits] if lane_bits else Const(0, 1)
        write_lane = self.write_addr[:lane_bits] if lane_bits else Const(0, 1)
        read_lane_1 = Signal.like(read_lane)
        read_input_1 = Signal()
        m.d.sync += [read_lane_1.eq(read_lane), read_input_1.eq(self.read_input)]
        lane_data = []
        for lane in range(P):
            memory = Memory(shape=unsigned(g.delay_store_bits), depth=g.delay_depth, init=[])
            m.submodules[f"delay_{lane}"] = memory
            write, read = memory.write_port(), memory.read_port()
            m.d.comb += [
                read.addr.eq(Mux(self.read_en & ~self.read_input, self.read_addr[lane_bits:], self.row)),
                self.row_delay[lane].eq(forward(read.data)),
                write.en.eq(self.write_en & ~self.write_input & (write_lane == lane)),
                write.addr.eq(self.write_addr[lane_bits:]),
                write.data.eq(self.write_data),
            ]
            lane_data.append(read.data)
        element = lane_data[0]
        for lane in range(1, P):
            element = Mux(read_lane_1 == lane, lane_data[lane], element)
        if build.input_delays is not None:
            m.submodules.input_delays = memory = Memory(shape=unsigned(g.delay_store_bits),
                                                        depth=build.inputs, init=[])
            write, read = memory.write_port(), memory.read_port()
            m.d.comb += [read.addr.eq(self.read_addr), write.en.eq(self.write_en & self.write_input),
                         write.addr.eq(self.write_addr), write.data.eq(self.write_data)]
            element = Mux(read_input_1, read.data, element)
        m.d.comb += [self.read_data.eq(element), self.read_forward.eq(forward(element))]
        return m
