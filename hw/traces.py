"""The delay traces of the learning core: :func:`delrec.arith.trace_update` of every channel, a pass a step."""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from delrec.build import CoreBuild

from .fixed import delay_line
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
    :attr:`SAMPLE_LATENCY` cycles later, the constructor's
    ``sample_latency``). Both are registered outputs, one request each per
    cycle at most; the data of a cycle without a request is ignored. Every
    age asked is in ``0..step`` (and below ``history_depth - 1``); each
    enabled channel's delay is asked for once, in order.

    **Datapath**: one multiply-accumulate (a DSP) does a channel's whole
    update in one sum at the scale ``2^K``: a *decay* term
    ``eps leak`` (multiply leak, ``K = decay_bits``; a shift leak ``p``:
    ``(eps + 1)(2^K - 2^(K - min(p, K)))``, ``K = min(v_bits, trace_bits - 1)``,
    since ``x - (x >> p) = floor((x + 1)(2^p - 1) / 2^p)``), then one term
    ``lut 2^K x`` per tap; the sum shifted right by ``K`` is exactly
    ``decay(eps) + D`` (floor), saturated to ``trace_bits`` and written.

    **Cycles**: a channel is a run of *slots*, one a cycle: its decay slot
    (the trace read), its taps (sample request and table read), and a
    closing slot (the channel's sum is written and the accumulator restarts):
    ``2 + taps`` slots. Each channel's delay is asked for when the previous
    channel's slots begin, into a one-channel header (no deeper queue), so a
    channel followed by another takes ``max(CHANNEL_CYCLES, 2 + taps)``
    cycles (``CHANNEL_CYCLES = 4``: a channel with fewer than 2 taps waits
    for the next delay). ``busy`` is high from the cycle after ``start`` for
    exactly :meth:`pass_cycles`
    ``= PASS_OVERHEAD + sum_{p < last} max(4, 2 + taps_p) + 2 + taps_last``
    cycles, ``PASS_OVERHEAD = 5 + SAMPLE_LATENCY``, the channels in pass
    order. The pipeline: the first delay request on ``s + 1`` (``start`` on
    ``s``), its data on ``s + 3``, the header registered on ``s + 4``, the
    first decay slot on ``s + 5``; the next channel's delay request on the
    cycle of a channel's decay slot. A slot on cycle ``i`` (registered
    sample request, table and trace addresses): table entry on ``i + 1``,
    delayed to ``i + SAMPLE_LATENCY``, the cycle of ``sample_data``; a
    decay slot's trace, read on ``i + 1``, is held by the read port until
    the next decay slot (4 cycles later at least: hence
    ``SAMPLE_LATENCY <= 4``); the slot's two operands in the DSP's input
    registers on ``i + SAMPLE_LATENCY + 1``, their product accumulated at
    the end of that cycle; on that cycle a closing slot writes its
    channel's sum (saturated) and restarts the accumulator instead.
    ``busy`` falls after the last channel's write. A pass without an
    enabled group does nothing (``busy`` stays low).

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
    sample_latency : int
        Cycles from a sample request to its ``sample_data``, ``1..4``
        (default 2).

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
    #: Cycles from a sample request to its ``sample_data`` (the default; see the instance's).
    SAMPLE_LATENCY = 2
    #: The sample latencies the unit takes.
    SAMPLE_LATENCIES = range(1, 5)
    #: Cycles a channel followed by another takes at least (its delay request to its header).
    CHANNEL_CYCLES = 4
    #: Slots of a channel beyond its taps: its decay slot and its closing slot.
    CHANNEL_SLOTS = 2

    def __init__(self, build: CoreBuild, *, sample_latency: int = 2):
        if not isinstance(build, CoreBuild):
            raise TypeError(f"Build must be a delrec.build.CoreBuild, not {build!r}")
        if not build.learns:
            raise ValueError(f"The trace unit belongs to a learning build (learning='step'), not "
                             f"learning={build.learning!r}")
        if type(sample_latency) is not int or sample_latency not in self.SAMPLE_LATENCIES:
            raise ValueError(f"Sample latency must be an integer in 1..4, not {sample_latency!r}")
        self._build = build
        spec = build.spec
        depth = build.history_depth
        self.SAMPLE_LATENCY = sample_latency
        #: Busy cycles of a pass beyond its channels' (:meth:`pass_cycles`).
        self.PASS_OVERHEAD = 5 + sample_latency
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

    @property
    def scale_bits(self) -> int:
        """``K``: the accumulator holds ``(decay(eps) + D) 2^K`` plus the decay's fraction."""
        s = self._build.spec
        return s.decay_bits if s.leak == "multiply" else min(s.v_bits, s.trace_bits - 1)

    @property
    def acc_bits(self) -> int:
        """Signed width of the accumulator: ``sum_bits + K``."""
        return self.sum_bits + self.scale_bits

    def pass_cycles(self, taps) -> int:
        """``busy`` cycles of a pass whose channels have ``taps`` taps each, in pass order."""
        return self.cycles_of_pass(taps, self.SAMPLE_LATENCY)

    @classmethod
    def cycles_of_pass(cls, taps, sample_latency: int = 2) -> int:
        """:meth:`pass_cycles` of a unit with ``sample_latency``, without building it."""
        taps = list(taps)
        if not taps:
            return 0
        return (5 + sample_latency + sum(max(cls.CHANNEL_CYCLES, cls.CHANNEL_SLOTS + n) for n in taps[:-1])
                + cls.CHANNEL_SLOTS + taps[-1])

    # -- one operation each (small methods, so that a test can break one) ---------------
    def _decay_operands(self, leak):
        """``(factor, base)``: the decay term is ``eps factor + base`` at the scale ``2^K``."""
        s = self._build.spec
        K = self.scale_bits
        if s.leak == "multiply":
            return leak, Const(0, 1)
        p = Mux(leak > K, K, leak)          # x >> p = x >> (trace_bits - 1) for p beyond
        factor = Cat(*(p >= K - j for j in range(K)))   # 2^K - 2^(K - p): bit j set for j >= K - p
        return factor, factor

    def _tap_fits(self, index, age):
        """Whether a tap exists: inside the table (``index <= 2 reach``) and sampled (``age <= step``)."""
        return (index <= (self.reach << 1)) & (age <= self.step)

    def _saturate(self, value, bits):
        """:func:`delrec.arith.sat` of a signed ``value`` to ``bits``: the high bits all equal, or the limit."""
        top = value[bits - 1:]
        sign = value[-1]
        fits = ~(top ^ sign.replicate(len(top))).any()
        lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
        return Mux(fits, value[:bits].as_signed(), Mux(sign, lo, hi))

    def elaborate(self, platform):
        b = self._build
        s = b.spec
        f = s.delay_frac_bits
        C, channels = b.inputs, b.channels
        L, K = self.SAMPLE_LATENCY, self.scale_bits
        far_max = (s.delay_max + b.max_reach) >> f
        m = Module()

        # a read never meets a write of its address when it matters (the pass reads a channel
        # before writing it, the host reads and writes between passes): no collision logic
        no_collision = {"no_rw_check": 1}
        m.submodules.traces = traces = Memory(shape=signed(s.trace_bits), depth=channels, init=[],
                                              attrs=no_collision)
        m.submodules.lut = lut = Memory(shape=signed(s.lut_bits), depth=b.lut_depth, init=[],
                                        attrs=no_collision)
        trace_w = traces.write_port()
        trace_r = traces.read_port()
        lut_w = lut.write_port()
        lut_r = lut.read_port()
        m.d.comb += [lut_w.en.eq(self.lut_write_en), lut_w.addr.eq(self.lut_write_addr),
                     lut_w.data.eq(self.lut_write_data)]

        # -- control: a pass or a clear ------------------------------------------------
        passing, clearing, issuing = Signal(), Signal(), Signal()
        m.d.comb += self.busy.eq(passing | clearing)
        first = Mux(self.learn_inputs, 0, C)
        last = Mux(self.learn_recurrent, channels - 1, C - 1)
        starting = ~self.busy & self.start & (self.learn_inputs | self.learn_recurrent)
        write_channel = Signal(range(channels))      # the channel written next (a pass or a clear)
        with m.If(starting):
            m.d.sync += [passing.eq(1), write_channel.eq(first)]
        with m.Elif(~self.busy & self.clear):
            m.d.sync += [clearing.eq(1), write_channel.eq(0)]
        with m.If(clearing):
            m.d.sync += write_channel.eq(write_channel + 1)
            with m.If(write_channel == channels - 1):
                m.d.sync += clearing.eq(0)

        # -- delay requests: one in flight, into a one-channel header --------------------
        asked = delay_line(m, self.delay_en, self.DELAY_LATENCY, "delay_asked")
        head_valid = Signal()
        head_age = Signal(range(far_max + 3))        # the first tap's age, lo + offset
        head_index = Signal(range(b.lut_depth + (1 << f)))  # its table entry
        take = Signal()                              # the slots take the header this cycle
        request = issuing & ~self.delay_en & ~asked[0] & ~asked[1] & (~head_valid | take)
        channel = Mux(starting, first, self.delay_channel + 1)
        m.d.sync += self.delay_en.eq(starting | request)
        with m.If(starting | request):
            m.d.sync += [self.delay_channel.eq(channel), issuing.eq(channel != last)]
        # the header, from delay_data: lo = max(0, -(near >> f)), near = reach - d
        near = Signal(signed(max(len(self.reach), s.stored_delay_bits) + 1))
        m.d.comb += near.eq(self.reach - self.delay_data)
        offset = self.delay_channel >= C
        below = near[-1]                             # d > reach: the window starts above 0
        with m.If(asked[-1]):
            m.d.sync += [head_valid.eq(1),
                         head_age.eq(Mux(below, offset - (near >> f), offset)),
                         head_index.eq(Mux(below, near[:f], near))]   # (lo << f) + near
        with m.Elif(take):
            m.d.sync += head_valid.eq(0)

        # -- the slots: decay, the taps, closing; one a cycle -------------------------
        slot_decay, slot_tap, slot_close = Signal(), Signal(), Signal()
        slot_channel = Signal(range(channels))
        age = Signal.like(head_age)
        index = Signal.like(head_index)
        m.d.comb += take.eq(head_valid & ~slot_decay & ~slot_tap)
        next_age = Mux(slot_tap, age + 1, age)
        next_index = Mux(slot_tap, index + (1 << f), index)
        fits = self._tap_fits(next_index, next_age)
        m.d.sync += [slot_decay.eq(take), slot_tap.eq(0), slot_close.eq(0)]
        with m.If(take):
            m.d.sync += [slot_channel.eq(self.delay_channel), age.eq(head_age), index.eq(head_index)]
        with m.Elif(slot_decay | slot_tap):
            m.d.sync += [age.eq(next_age), index.eq(next_index), slot_tap.eq(fits), slot_close.eq(~fits)]
        m.d.comb += [
            self.sample_en.eq(slot_tap),
            self.sample_channel.eq(slot_channel),
            self.sample_age.eq(age),
            lut_r.addr.eq(index),
            trace_r.addr.eq(Mux(passing, slot_channel, self.read_addr)),
            trace_r.en.eq(slot_decay | self.read_en),
            self.read_data.eq(trace_r.data),
        ]

        # -- i + L: the DSP's operands; i + L + 1: accumulate, or write and restart --
        entry = lut_r.data
        for n in range(L - 1):
            delayed = Signal(signed(s.lut_bits), name=f"entry_{n + 2}", reset_less=True)
            m.d.sync += delayed.eq(entry)
            entry = delayed
        decays = delay_line(m, slot_decay, L, "slot_decay")
        slots = delay_line(m, slot_decay | slot_tap | slot_close, L + 1, "slot_valid")
        closes = delay_line(m, slot_close, L + 1, "slot_close")
        # tap terms lut x 2^K as (lut << a) (x << K - a): both within a 16-bit DSP operand
        a = min(K, max(0, 16 - s.lut_bits))
        factor, base = self._decay_operands(self.leak)
        left = Signal(signed(max(s.trace_bits, s.lut_bits + a)), reset_less=True)
        # (signed, with a zero top bit: one signed multiply, which the DSP's accumulator takes)
        right = Signal(signed(max(len(factor), s.count_bits + K - a) + 1), reset_less=True)
        m.d.sync += [left.eq(Mux(decays[-1], trace_r.data, entry << a)),
                     right.eq(Mux(decays[-1], factor, self.sample_data << (K - a)))]
        acc = Signal(signed(self.acc_bits), reset_less=True)
        restart = closes[-1] | starting
        with m.If(slots[-1] | starting):
            m.d.sync += acc.eq(Mux(restart, base, acc + left * right))
        with m.If(clearing):
            m.d.comb += [trace_w.en.eq(1), trace_w.addr.eq(write_channel), trace_w.data.eq(0)]
        with m.Elif(closes[-1]):
            m.d.comb += [trace_w.en.eq(1), trace_w.addr.eq(write_channel),
                         trace_w.data.eq(self._saturate(acc >> K, s.trace_bits))]
            m.d.sync += write_channel.eq(write_channel + 1)
            with m.If(write_channel == last):
                m.d.sync += passing.eq(0)
        return m
