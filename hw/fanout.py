"""The fan-out engine: one column of the input or recurrent weights, one row of lanes per cycle."""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from delrec.build import CoreBuild

from .fixed import delay_line
from .weights import WEIGHT_READ_LATENCY

__all__ = ["FanOut"]


class FanOut(wiring.Component):
    """Streams column ``j`` of a weight matrix: ``B`` rows of ``P`` weights, one row per cycle.

    A ``start`` with ``start_base = j B`` and ``start_recurrent`` (the input
    weights ``w_in[:, j]`` or the recurrent ones ``w_rec[:, j]``) issues the
    reads of rows ``0..B-1`` on the next ``B`` cycles (stage 0, the address
    ``read_index = j B + row`` from a counter register); each row's weights
    come back :data:`~delrec.hw.weights.WEIGHT_READ_LATENCY` cycles later,
    when the row is *delivered* (``valid``, ``row``, ``weight``): the core
    adds them into its delay queue, or (a learning core) into the delay
    update's back-projection. ``ahead_valid``/``ahead_row`` announce the row
    delivered on the next cycle, so that other per-lane memories can be read
    in step with the weights. A new ``start`` may come with the last row's
    issue (``last_issue``): columns stream back to back.

    Offsets: each delivered weight is due ``offset[l]`` steps from now:
    ``start_offset`` for every lane (``1 + d_j`` of an axonal recurrent
    delay, 0 for an input), or, with synaptic delays, ``1 + d_ij`` from the
    ``delay`` input (the core's delay memories read at ``read_index``, their
    data one cycle later).

    Parameters
    ----------
    build : CoreBuild

    Attributes
    ----------
    start, start_recurrent : In(1)
    start_base : In(range(max(C, N) B))
    start_offset : In(unsigned(delay_bits))
    read_index : Out(range(max(C, N) B))
        The weight memories' read index.
    w_in, w_rec : In(ArrayLayout(signed(weight_bits), P))
        The weight memories' data (``read_index`` of ``WEIGHT_READ_LATENCY`` cycles before).
    delay : In(ArrayLayout(unsigned(delay_bits), P))
        Synaptic delays: the delay memories' data (``read_index`` of the cycle before).
    active : Out(1)
        Reads being issued.
    last_issue : Out(1)
        The last row's read is issued this cycle.
    done : Out(1)
        Nothing issued, fetched or delivered.
    ahead_valid, ahead_row : Out
        The row delivered on the next cycle.
    valid, row, recurrent : Out
        The row delivered this cycle.
    weight : Out(ArrayLayout(signed(weight_bits), P))
    offset : Out(ArrayLayout(unsigned(delay_bits), P))
    """

    def __init__(self, build: CoreBuild):
        self._build = build
        spec, P, B = build.spec, build.lanes, build.rows
        columns = max(build.inputs, build.neurons) * B
        offset = unsigned(spec.delay_bits)
        super().__init__({
            "start": In(1),
            "start_base": In(range(columns)),
            "start_recurrent": In(1),
            "start_offset": In(offset),
            "read_index": Out(range(columns)),
            "w_in": In(data.ArrayLayout(signed(spec.weight_bits), P)),
            "w_rec": In(data.ArrayLayout(signed(spec.weight_bits), P)),
            "delay": In(data.ArrayLayout(offset, P)),
            "active": Out(1),
            "last_issue": Out(1),
            "done": Out(1),
            "ahead_valid": Out(1),
            "ahead_row": Out(range(B)),
            "valid": Out(1),
            "row": Out(range(B)),
            "recurrent": Out(1),
            "weight": Out(data.ArrayLayout(signed(spec.weight_bits), P)),
            "offset": Out(data.ArrayLayout(offset, P)),
        })

    def elaborate(self, platform):
        build = self._build
        spec, P, B = build.spec, build.lanes, build.rows
        latency = WEIGHT_READ_LATENCY
        m = Module()
        row = Signal(range(B))                          # stage 0: the row whose reads are issued
        recurrent = Signal()
        offset = Signal(spec.delay_bits)
        m.d.comb += self.last_issue.eq(self.active & (row == B - 1))
        # stages 1 .. latency: the words read, registered, then delivered
        valids = delay_line(m, self.active, latency, "fetching")
        rows = delay_line(m, row, latency, "fetch_row")
        recurrents = delay_line(m, recurrent, latency, "fetch_recurrent")
        offsets = delay_line(m, offset, latency, "fetch_offset")
        m.d.comb += [
            self.done.eq(~self.active & ~Cat(*valids).any()),
            self.ahead_valid.eq(valids[-2] if latency > 1 else self.active),
            self.ahead_row.eq(rows[-2] if latency > 1 else row),
            self.valid.eq(valids[-1]),
            self.row.eq(rows[-1]),
            self.recurrent.eq(recurrents[-1]),
        ]
        with m.If(self.active):
            m.d.sync += [row.eq(row + 1), self.read_index.eq(self.read_index + 1)]
            with m.If(self.last_issue):
                m.d.sync += self.active.eq(0)
        with m.If(self.start):
            m.d.sync += [self.active.eq(1), row.eq(0), self.read_index.eq(self.start_base),
                         recurrent.eq(self.start_recurrent), offset.eq(self.start_offset)]
        synaptic = build.delay_kind == "synaptic"
        for lane in range(P):
            m.d.comb += self.weight[lane].eq(Mux(recurrents[-1], self.w_rec[lane], self.w_in[lane]))
            if synaptic:   # the connection's delay, read beside its weight and registered
                fetched = delay_line(m, self.delay[lane], latency - 1, f"fetched_delay_{lane}")[-1]
                m.d.comb += self.offset[lane].eq(Mux(recurrents[-1], (1 + fetched)[:spec.delay_bits], 0))
            else:
                m.d.comb += self.offset[lane].eq(Mux(recurrents[-1], offsets[-1], 0))
        return m
