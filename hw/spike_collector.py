"""The host link's spike collector: a step's spikes -> a bitmap in the link's buffer."""

from __future__ import annotations

from amaranth.hdl import Const, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from delrec.build import CoreBuild

from .link_buffer import BUFFER_WRITE, STATS_BASE
from .ports import CoreGeometry, spike_layout

__all__ = ["SpikeCollector"]


class SpikeCollector(wiring.Component):
    """Closes a step and collects its spikes into a bitmap of ``ceil(N/8)`` bytes at buffer address 0.

    On ``start`` (taken while idle) the collector zeroes the bitmap, a byte
    per cycle, then asks for the step's closing input beat (``last=1``) on
    ``close``, then takes ``spikes`` (always ready: the core's ``CYCLES``
    counter sees no delay) until the one with ``last`` set. Neuron ``i``
    sets bit ``i % 8`` of byte ``i // 8``; the spikes come in increasing
    order, so the byte being gathered is written when a spike of a later
    byte arrives, and at the end.

    Timing: the bitmap is zeroed in the ``ceil(N/8)`` cycles after the edge
    that takes ``start``; ``close`` is valid in the next, until taken; spikes
    are taken from the next cycle on. ``done`` is asserted in the cycle that
    takes the last spike (which writes the last bitmap byte); the collector
    is idle from the next.

    Parameters
    ----------
    build : CoreBuild
        The core's build (its neuron count sizes the bitmap and the spike stream).

    Attributes
    ----------
    start : In(stream.Signature(0, always_ready=True))
        Starts collecting a step's spikes.
    close : Out(stream.Signature(0))
        Asks for the step's closing input beat.
    spikes : In(stream.Signature(spike_layout(geometry)))
        The core's spikes.
    buffer : Out(BUFFER_WRITE)
        The collector's write port of the link's buffer.
    done : Out(1)
        The last spike is taken and the bitmap written.
    """

    def __init__(self, build: CoreBuild):
        self.geometry = geometry = CoreGeometry(build)
        self.bitmap_bytes = -(-build.neurons // 8)
        if self.bitmap_bytes > STATS_BASE:
            raise ValueError(f"A spike bitmap of {self.bitmap_bytes} bytes must fit below the frame "
                             f"counters at buffer address {STATS_BASE}")
        super().__init__({
            "start": In(stream.Signature(0, always_ready=True)),
            "close": Out(stream.Signature(0)),
            "spikes": In(stream.Signature(spike_layout(geometry))),
            "buffer": Out(BUFFER_WRITE),
            "done": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        bitmap_bytes, buffer = self.bitmap_bytes, self.buffer
        zero_pointer = Signal(range(bitmap_bytes))
        bitmap_byte = Signal(8)             # the byte being gathered ...
        bitmap_index = Signal(range(bitmap_bytes))     # ... and its address

        with m.FSM(name="collector"):
            with m.State("IDLE"):
                with m.If(self.start.valid):
                    m.next = "ZERO"

            with m.State("ZERO"):
                m.d.comb += [buffer.en.eq(1), buffer.addr.eq(zero_pointer), buffer.data.eq(0)]
                m.d.sync += zero_pointer.eq(zero_pointer + 1)
                with m.If(zero_pointer == bitmap_bytes - 1):
                    m.d.sync += zero_pointer.eq(0)
                    m.next = "CLOSE"

            with m.State("CLOSE"):
                m.d.comb += self.close.valid.eq(1)
                with m.If(self.close.ready):
                    m.d.sync += [bitmap_byte.eq(0), bitmap_index.eq(0)]
                    m.next = "COLLECT"

            with m.State("COLLECT"):
                spike = self.spikes.payload
                spike_byte = spike.neuron >> 3
                spike_bit = (Const(1, 8) << spike.neuron[:3])[:8]
                m.d.comb += self.spikes.ready.eq(1)
                with m.If(self.spikes.valid):
                    with m.If(spike.last):
                        m.d.comb += [buffer.en.eq(1), buffer.addr.eq(bitmap_index), buffer.data.eq(bitmap_byte),
                                     self.done.eq(1)]
                        m.next = "IDLE"
                    with m.Elif(spike_byte == bitmap_index):
                        m.d.sync += bitmap_byte.eq(bitmap_byte | spike_bit)
                    with m.Else():
                        m.d.comb += [buffer.en.eq(1), buffer.addr.eq(bitmap_index), buffer.data.eq(bitmap_byte)]
                        m.d.sync += [bitmap_byte.eq(spike_bit), bitmap_index.eq(spike_byte)]
        return m
