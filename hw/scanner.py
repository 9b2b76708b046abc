"""The spike scanner: rows of ``P`` spike bits read one per cycle, then one spike at a time."""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Signal, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from delrec.build import CoreBuild

from .fixed import delay_line
from .ports import PROBE_LATENCY

__all__ = ["SpikeScanner"]


class SpikeScanner(wiring.Component):
    """Finds the spikes of a row-organised bit set in increasing neuron order.

    ``start`` reads row 0 at once and rows ``1..B-1`` on the following
    cycles (``probe_en``, ``probe_row``, to the delay queue's probe port);
    each row's ``P`` bits come back :data:`~delrec.hw.ports.PROBE_LATENCY`
    cycles later (per queue kind, ``L``) on ``probe_spikes``, with the row's per-lane ``row_delay``
    (the core's delay memories read at ``probe_row``, registered here). Rows
    with spikes wait in a queue of ``L + 1`` rows whose head is
    the row being handled; a read is issued only when the queue will have
    room for it, so empty rows stream at one per cycle and no path runs
    from a memory's output into the control. ``pending`` says the head row
    has a spike left: ``pick_neuron`` (the lowest lane first) with its
    ``pick_delay``; ``pick`` takes it (the next one is offered on the next
    cycle). ``done``: every row read and every spike taken.

    A scan costs ``B + L`` cycles without spikes, and at least
    one more per spike.

    Parameters
    ----------
    build : CoreBuild

    Attributes
    ----------
    start : In(1)
    probe_en : Out(1)
    probe_row : Out(range(B))
        The next row to read (a register; 0 between scans).
    probe_spikes : In(unsigned(P))
    row_delay : In(ArrayLayout(unsigned(delay_bits), P))
        The delays of the row read on the previous cycle.
    pending : Out(1)
    pick : In(1)
    pick_neuron : Out(range(N))
    pick_delay : Out(unsigned(delay_bits))
    done : Out(1)
    """

    def __init__(self, build: CoreBuild):
        self._build = build
        spec, P = build.spec, build.lanes
        super().__init__({
            "start": In(1),
            "probe_en": Out(1),
            "probe_row": Out(range(build.rows)),
            "probe_spikes": In(unsigned(P)),
            "row_delay": In(data.ArrayLayout(unsigned(spec.delay_bits), P)),
            "pending": Out(1),
            "pick": In(1),
            "pick_neuron": Out(range(build.neurons)),
            "pick_delay": Out(unsigned(spec.delay_bits)),
            "done": Out(1),
        })

    def elaborate(self, platform):
        build = self._build
        spec, P, B = build.spec, build.lanes, build.rows
        lane_bits = (P - 1).bit_length()
        latency = PROBE_LATENCY[build.queue]
        depth = latency + 1                         # rows that may wait, the handled one first
        m = Module()
        issuing = Signal()                          # rows left to read
        flight = [Signal(name=f"probe_valid_{n}") for n in range(latency)]
        flight_rows = [Signal(range(B), name=f"probe_row_{n}") for n in range(latency)]
        wait_bits = [Signal(P, name=f"wait_bits_{n}") for n in range(depth)]
        wait_rows = [Signal(range(B), name=f"wait_row_{n}") for n in range(depth)]
        wait_delays = [[Signal(spec.delay_bits, name=f"wait_delay_{n}_{lane}") for lane in range(P)]
                       for n in range(depth)]
        waiting = Signal(range(depth + 1))          # rows in the wait queue
        arrive = Signal()                           # a probed row with spikes joins the queue
        pop = Signal()                              # the head row is done
        head = wait_bits[0]                         # spikes of the head row not taken yet
        pick_lane = Signal(range(P))
        in_flight = 0
        for valid in flight:
            in_flight = in_flight + valid
        m.d.comb += [
            arrive.eq(flight[-1] & (self.probe_spikes != 0)),
            pop.eq((waiting != 0) & (head == 0)),
            self.pending.eq(head != 0),
            self.done.eq(~issuing & ~Cat(*flight).any() & (waiting == 0)),
        ]
        m.d.sync += [flight[0].eq(self.probe_en), flight_rows[0].eq(self.probe_row)]
        m.d.sync += [flight[n].eq(flight[n - 1]) for n in range(1, latency)]
        m.d.sync += [flight_rows[n].eq(flight_rows[n - 1]) for n in range(1, latency)]
        # the delays of a probed row come a cycle after the probe: aligned with its bits
        probed_delays = [delay_line(m, self.row_delay[lane], latency - 1, f"probe_delay_{lane}")[-1]
                         for lane in range(P)]
        with m.If(self.start):                      # row 0 at once (probe_row is 0 between scans)
            m.d.comb += self.probe_en.eq(1)
            if B > 1:
                m.d.sync += [self.probe_row.eq(1), issuing.eq(1)]
        with m.Elif(issuing & (waiting + in_flight - pop < depth)):
            m.d.comb += self.probe_en.eq(1)
            m.d.sync += self.probe_row.eq(self.probe_row + 1)
            with m.If(self.probe_row == B - 1):
                m.d.sync += [issuing.eq(0), self.probe_row.eq(0)]
        push_at = (waiting - pop)[:len(waiting)]
        for n in range(depth):
            with m.If(arrive & (push_at == n)):
                m.d.sync += [wait_bits[n].eq(self.probe_spikes), wait_rows[n].eq(flight_rows[-1])]
                m.d.sync += [w.eq(d) for w, d in zip(wait_delays[n], probed_delays)]
            with m.Elif(pop):
                if n + 1 < depth:
                    m.d.sync += [wait_bits[n].eq(wait_bits[n + 1]), wait_rows[n].eq(wait_rows[n + 1])]
                    m.d.sync += [w.eq(d) for w, d in zip(wait_delays[n], wait_delays[n + 1])]
                else:
                    m.d.sync += wait_bits[n].eq(0)
        m.d.sync += waiting.eq(waiting + arrive - pop)
        for lane in reversed(range(P)):   # the lowest pending lane wins
            with m.If(head[lane]):
                m.d.comb += [pick_lane.eq(lane), self.pick_delay.eq(wait_delays[0][lane])]
        m.d.comb += self.pick_neuron.eq(Cat(pick_lane[:lane_bits], wait_rows[0]) if lane_bits
                                        else wait_rows[0])
        with m.If(self.pick):   # never with a pop (the head has spikes) nor a push into the head
            m.d.sync += head.eq(head & ~(Const(1, 1) << pick_lane)[:P])
        return m
