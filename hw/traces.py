"""The delay traces of the learning core: :func:`delrec.arith.trace_update` of every channel, a pass a step."""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from delrec.build import CoreBuild

from .fixed import decay, delay_line, saturate
from .ports import CoreGeometry

__all__ = ["TraceUnit"]


class TraceUnit(wiring.Component):
    """The delay traces ``eps_p`` of every presynaptic channel, and the Gaussian-derivative table.

    Memories (synchronous reads): ``traces`` ``channels x trace_bits``
    signed (channel ``p``: the inputs ``0..C-1``, then the neurons
    ``C..C+N-1``) and ``lut`` ``lut_depth x lut_bits`` signed (entry
    ``x + reach`` holds the kernel at ``x = m 2^f - d``).

    **Pass** (``start``, one step of the rule): for every channel ``p`` of the
    enabled groups (``learn_inputs``: ``0..C-1``; ``learn_recurrent``:
    ``C..C+N-1``), in increasing order,
    ``lo, hi = tap_range(d_p, reach, f, step, offset)`` (``offset`` 0 for an
    input, 1 for a neuron), ``D = sum_{m=lo..hi} lut[(m << f) - d_p + reach]
    * x_p[age m + offset]`` (exact) and
    ``eps_p = trace_update(eps_p, D, leak, spec)``: bit-exact with
    :mod:`delrec.arith`. Taps outside the window are never asked for, and
    neither is a table entry outside ``0..2 reach``; an empty window adds 0
    (the trace still decays).

    The pass asks the core for what it owns through two fixed-latency request
    ports: ``delay_en`` with ``delay_channel`` (``delay_data`` = ``d_p``
    :data:`DELAY_LATENCY` cycles later) and ``sample_en`` with
    ``sample_channel``, ``sample_age`` (``sample_data`` = the channel's
    event count, or spike bit, ``sample_age`` steps before ``step``,
    :data:`SAMPLE_LATENCY` cycles later). Both are registered outputs, one
    request each per cycle at most; the data of a cycle without a request is
    ignored. Every age asked is in ``0..step`` (and below
    ``history_depth - 1``); each enabled channel's delay is asked for once,
    in order.

    Cycles: ``busy`` is high from the cycle after ``start`` for exactly
    ``PASS_OVERHEAD + sum_p max(1, hi_p - lo_p + 1)`` cycles
    (:meth:`pass_cycles`): one cycle per tap, one for a channel without taps,
    back to back across channels. The delay requests run ahead of the taps
    (at most :data:`QUEUE_DEPTH` channels requested and not yet started),
    so the channels' set-up overlaps the previous channels' taps.
    The pipeline, for a delay request on cycle ``a``: ``delay_data`` on
    ``a + 2``; registered ``reach - d``, ``d + reach``, ``step - offset``
    on ``a + 3``; ``lo`` and ``hi`` on ``a + 4``; the tap count, first table
    entry and first age written to a small queue that cycle, the channel's
    first tap on ``a + 6`` or later. A tap on cycle ``i`` (sample request
    and table read; the trace is read beside it): table entry and trace
    registered on ``i + 2``; the sample, the entry and the leaked trace
    ``decay(eps)`` on ``i + 3``; their product on ``i + 4``; the sum
    ``decay(eps) + D`` so far on ``i + 5``, written saturated to ``traces``
    on ``i + 5`` after the channel's last tap. A pass without an enabled
    group does nothing (``busy`` stays low).

    ``clear``: every trace to 0, one a cycle: ``busy`` for ``channels`` cycles
    from the cycle after ``clear``.

    ``read_en`` with ``read_addr``: ``read_data`` is that trace the next
    cycle (and held until the next read), while not ``busy``.

    The core must keep ``reach``, ``leak``, ``step`` and the group flags
    steady from ``start`` until ``busy`` falls, give ``start`` or ``clear``
    only while ``busy`` is low, write the table and read traces only while
    ``busy`` is low, and answer every request with exactly its latency.

    Parameters
    ----------
    build : CoreBuild
        A learning build (``build.learns``).

    Attributes
    ----------
    lut_write_en, lut_write_addr, lut_write_data : In
        A host write of the table.
    read_en, read_addr : In
    read_data : Out(signed(trace_bits))
    reach : In(range(max_reach + 1))
        ``R``, the half-width of the loaded table.
    leak : In(unsigned(CoreGeometry(build).leak_bits))
        The leak parameter of :func:`delrec.arith.decay`.
    step : In(unsigned((2 history_depth).bit_length()))
        ``t``: the step since the last clear (the core saturates it).
    learn_inputs, learn_recurrent : In(1)
        The groups a pass processes.
    start, clear : In(1)
        Strobes.
    busy : Out(1)
    delay_en, delay_channel : Out
    delay_data : In(unsigned(stored_delay_bits))
    sample_en, sample_channel, sample_age : Out
    sample_data : In(unsigned(count_bits))
        A neuron's spike bit zero-extended.
    """

    #: Cycles from a delay request to its ``delay_data``.
    DELAY_LATENCY = 2
    #: Cycles from a sample request to its ``sample_data``.
    SAMPLE_LATENCY = 2
    #: Channels requested ahead of the taps: enough that the taps never wait.
    QUEUE_DEPTH = 8
    #: Busy cycles of a pass beyond its taps (:meth:`pass_cycles`).
    PASS_OVERHEAD = 12

    def __init__(self, build: CoreBuild):
        if not isinstance(build, CoreBuild):
            raise TypeError(f"Build must be a delrec.build.CoreBuild, not {build!r}")
        if not build.learns:
            raise ValueError(f"The trace unit belongs to a learning build (learning='step'), not "
                             f"learning={build.learning!r}")
        self._build = build
        spec = build.spec
        depth = build.history_depth
        self.CLEAR_CYCLES = build.channels
        super().__init__({
            "lut_write_en": In(1),
            "lut_write_addr": In(range(build.lut_depth)),
            "lut_write_data": In(signed(spec.lut_bits)),
            "read_en": In(1),
            "read_addr": In(range(build.channels)),
            "read_data": Out(signed(spec.trace_bits)),
            "reach": In(range(build.max_reach + 1)),
            "leak": In(unsigned(CoreGeometry(build).leak_bits)),
            "step": In(unsigned((2 * depth).bit_length())),
            "learn_inputs": In(1),
            "learn_recurrent": In(1),
            "start": In(1),
            "clear": In(1),
            "busy": Out(1),
            "delay_en": Out(1),
            "delay_channel": Out(range(build.channels)),
            "delay_data": In(unsigned(spec.stored_delay_bits)),
            "sample_en": Out(1),
            "sample_channel": Out(range(build.channels)),
            "sample_age": Out(range(depth)),
            "sample_data": In(unsigned(spec.count_bits)),
        })

    # -- sizes -------------------------------------------------------------------------
    @property
    def max_taps(self) -> int:
        """The most taps of one channel: ``floor(2 max_reach / 2^f) + 1``."""
        return ((2 * self._build.max_reach) >> self._build.spec.delay_frac_bits) + 1

    @property
    def sum_bits(self) -> int:
        """Signed width of ``decay(eps) + D``, exact for every table, sample and delay."""
        s = self._build.spec
        bound = (1 << (s.lut_bits - 1)) * ((1 << s.count_bits) - 1) * self.max_taps \
            + (1 << (s.trace_bits - 1))
        return bound.bit_length() + 1

    def pass_cycles(self, taps) -> int:
        """``busy`` cycles of a pass whose channels have ``taps`` taps each (in any order)."""
        taps = list(taps)
        return self.PASS_OVERHEAD + sum(max(1, n) for n in taps) if taps else 0

    # -- the window (one adder or compare per line) -----------------------------------
    def _window(self, near, far, limit):
        """``lo = max(0, -near)``, ``hi = min(far, limit)``: :func:`delrec.arith.tap_range`.

        ``near = (reach - d) >> f`` (so ``-near = ceil((d - reach) / 2^f)``),
        ``far = (d + reach) >> f``, ``limit = t - offset``.
        """
        return Mux(near < 0, -near, 0), Mux(far < limit, far, limit)

    def elaborate(self, platform):
        b = self._build
        s = b.spec
        f = s.delay_frac_bits
        C, channels, depth = b.inputs, b.channels, b.history_depth
        far_max = (s.delay_max + b.max_reach) >> f
        m = Module()

        m.submodules.traces = traces = Memory(shape=signed(s.trace_bits), depth=channels, init=[])
        m.submodules.lut = lut = Memory(shape=signed(s.lut_bits), depth=b.lut_depth, init=[])
        trace_w = traces.write_port()
        trace_r = traces.read_port()
        lut_w = lut.write_port()
        lut_r = lut.read_port()
        m.d.comb += [lut_w.en.eq(self.lut_write_en), lut_w.addr.eq(self.lut_write_addr),
                     lut_w.data.eq(self.lut_write_data)]

        # One channel's taps: count - 1 (negative: none), first table entry, first age.
        head = data.StructLayout({
            "channel": range(channels),
            "left": range(-s.depth - 1, max(far_max, s.depth) + 1),
            "index": range(b.lut_depth),
            "age": range(depth),
        })
        m.submodules.queue = queue = SyncFIFO(width=head.size, depth=self.QUEUE_DEPTH)

        # -- control: a pass or a clear ------------------------------------------------
        passing = Signal()
        clearing = Signal()
        clear_addr = Signal(range(channels))
        issuing = Signal()                           # channels left to request
        next_channel = Signal(range(channels))
        last_channel = Signal(range(channels))
        pending = Signal(range(self.QUEUE_DEPTH + 1))  # requested and not started
        m.d.comb += self.busy.eq(passing | clearing)

        any_group = self.learn_inputs | self.learn_recurrent
        with m.If(~self.busy & self.start & any_group):
            m.d.sync += [
                passing.eq(1), issuing.eq(1),
                next_channel.eq(Mux(self.learn_inputs, 0, C)),
                last_channel.eq(Mux(self.learn_recurrent, channels - 1, C - 1)),
            ]
        with m.Elif(~self.busy & self.clear):
            m.d.sync += [clearing.eq(1), clear_addr.eq(0)]
        with m.If(clearing):
            m.d.sync += clear_addr.eq(clear_addr + 1)
            with m.If(clear_addr == channels - 1):
                m.d.sync += clearing.eq(0)

        # -- the delay requests, and each channel's window ----------------------------
        request = issuing & (pending < self.QUEUE_DEPTH)
        neuron = Signal()                            # the requested channel's offset
        m.d.sync += self.delay_en.eq(request)
        with m.If(request):
            m.d.sync += [self.delay_channel.eq(next_channel), neuron.eq(next_channel >= C),
                         next_channel.eq(next_channel + 1)]
            with m.If(next_channel == last_channel):
                m.d.sync += issuing.eq(0)
        valids = delay_line(m, self.delay_en, 4, "window_valid")
        chans = delay_line(m, self.delay_channel, 4, "window_channel")
        neurons = delay_line(m, neuron, 4, "window_neuron")
        # a + 2 -> a + 3: the delay's distances to the table's edges, and the last step sampled
        near_sum = Signal(signed(max(len(self.reach), s.stored_delay_bits) + 1))
        far_sum = Signal(range(s.delay_max + b.max_reach + 1))
        limit = Signal(signed(len(self.step) + 1))
        m.d.sync += [near_sum.eq(self.reach - self.delay_data), far_sum.eq(self.delay_data + self.reach),
                     limit.eq(self.step - neurons[1])]
        # a + 3 -> a + 4: the window lo..hi
        lo = Signal(range(s.depth))
        hi = Signal(range(-1, far_max + 1))
        near_sum_4 = Signal.like(near_sum)
        first, last = self._window(near_sum >> f, far_sum >> f, limit)
        m.d.sync += [lo.eq(first), hi.eq(last), near_sum_4.eq(near_sum)]
        # a + 4: into the queue (its register is the stage)
        entry = head(queue.w_data)
        m.d.comb += [
            queue.w_en.eq(valids[3]),
            entry.channel.eq(chans[3]),
            entry.left.eq(hi - lo),
            entry.index.eq((lo << f) + near_sum_4),
            entry.age.eq(lo + neurons[3]),
        ]

        # -- the taps: one a cycle, the channels back to back --------------------------
        tap_valid, tap_first, tap_last, tap_real = Signal(), Signal(), Signal(), Signal()
        tap_channel = Signal(range(channels))
        tap_age = Signal(range(depth))
        tap_index = Signal(range(b.lut_depth))
        tap_left = Signal.like(entry.left)
        top = head(queue.r_data)
        pop = queue.r_rdy & (~tap_valid | tap_last)
        m.d.comb += queue.r_en.eq(pop)
        m.d.sync += pending.eq(pending + request - pop)
        with m.If(pop):
            m.d.sync += [
                tap_valid.eq(1), tap_first.eq(1), tap_real.eq(top.left >= 0), tap_last.eq(top.left <= 0),
                tap_channel.eq(top.channel), tap_age.eq(top.age), tap_index.eq(top.index),
                tap_left.eq(top.left),
            ]
        with m.Elif(tap_valid & ~tap_last):
            m.d.sync += [
                tap_first.eq(0), tap_last.eq(tap_left <= 1), tap_left.eq(tap_left - 1),
                tap_age.eq(tap_age + 1), tap_index.eq(tap_index + (1 << f)),
            ]
        with m.Else():
            m.d.sync += tap_valid.eq(0)
        m.d.comb += [
            self.sample_en.eq(tap_valid & tap_real),
            self.sample_channel.eq(tap_channel),
            self.sample_age.eq(tap_age),
            lut_r.addr.eq(tap_index),
            trace_r.addr.eq(Mux(passing, tap_channel, self.read_addr)),
            trace_r.en.eq(passing | self.read_en),
            self.read_data.eq(trace_r.data),
        ]

        # i + 1 -> i + 2 -> i + 3 -> i + 4 -> i + 5: registered reads, the leak and the
        # sample, the product, the sum; the write after the last tap
        asked = delay_line(m, self.sample_en, 2, "tap_asked")
        firsts = delay_line(m, tap_first, 4, "tap_first")
        lasts = delay_line(m, tap_valid & tap_last, 5, "tap_last")
        channel_5 = delay_line(m, tap_channel, 5, "tap_channel")[-1]
        entry_2, entry_3 = Signal(signed(s.lut_bits)), Signal(signed(s.lut_bits))
        trace_2 = Signal(signed(s.trace_bits))
        leaked_3, leaked_4 = Signal(signed(s.trace_bits)), Signal(signed(s.trace_bits))
        sample_3 = Signal(unsigned(s.count_bits))
        product_4 = Signal(signed(s.lut_bits + s.count_bits + 1))
        total = Signal(signed(self.sum_bits))
        m.d.sync += [
            entry_2.eq(lut_r.data), trace_2.eq(trace_r.data),
            entry_3.eq(entry_2), sample_3.eq(Mux(asked[1], self.sample_data, 0)),
            leaked_3.eq(decay(trace_2, self.leak, s.leak, s.decay_bits)),
            product_4.eq(entry_3 * sample_3), leaked_4.eq(leaked_3),
            total.eq(Mux(firsts[3], leaked_4, total) + product_4),
        ]
        with m.If(clearing):
            m.d.comb += [trace_w.en.eq(1), trace_w.addr.eq(clear_addr), trace_w.data.eq(0)]
        with m.Elif(lasts[4]):
            m.d.comb += [trace_w.en.eq(1), trace_w.addr.eq(channel_5),
                         trace_w.data.eq(saturate(total, s.trace_bits))]
            with m.If(channel_5 == last_channel):
                m.d.sync += passing.eq(0)
        return m
