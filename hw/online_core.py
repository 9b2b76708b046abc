"""The online-learning core: a LIF layer with learnable input delays and its three-factor unit."""

from __future__ import annotations

import math
from types import SimpleNamespace

from amaranth.hdl import Cat, Const, Module, Mux, Shape, Signal, Value, signed, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from delrec.arith import decay, rshift_round

from .fixed import saturate
from .online_ports import (COUNTER_BITS, OnlineArithmetic, OnlineConfigRegister, OnlineCounter, OnlineFlag,
                           OnlineGeometry, OnlineReadTarget, OnlineWriteTarget, SignalKind)

__all__ = ["OnlineCore"]


def _rshift_round(value, shift):
    """:func:`delrec.arith.rshift_round` with a run-time shift (``0`` is exact).

    ``(x + 2^(k-1)) >> k`` equals ``((x >> (k-1)) + 1) >> 1`` for ``k >= 1``
    (nested floors), which needs no ``2^(k-1)`` constant as wide as the
    largest shift: one shifter of the value's width and an increment.
    """
    coarse = value >> (shift - 1)[:len(shift)]
    return Mux(shift == 0, value, (coarse + 1) >> 1)


def _top(value, frac: int):
    """``value >> frac`` (floor) as a narrower signed value: the forward part of a learning weight."""
    return value[frac:].as_signed()


def _feedback_weight(value, spec):
    """The bits of a readout weight's learning copy the broadcast reads: the forward
    ``weight_bits`` and ``spec.feedback_frac_bits`` of the fraction below them."""
    return _top(value, spec.weight_frac_bits - spec.feedback_frac_bits)


def _broadcast_signal(total, spec):
    """``L = sat(round(sum_k err_k B_ik >> (weight_bits - 1 + feedback_frac_bits)))``."""
    return saturate(rshift_round(total, spec.weight_bits - 1 + spec.feedback_frac_bits),
                    spec.signal_bits)


def _clamp(value, lo: int, hi: int):
    return Mux(value < lo, lo, Mux(value > hi, hi, value))


def _times(value, constant: int):
    """``value * constant`` as shifted additions (a constant row stride, no multiplier)."""
    terms = [value << n for n in range(constant.bit_length()) if constant >> n & 1]
    out = terms[0] if terms else Const(0)
    for term in terms[1:]:
        out = out + term
    return out


class _Ram:
    """One memory with a synchronous read port and a write port, driven from the FSM."""

    def __init__(self, m: Module, name: str, shape, depth: int):
        self.depth = depth
        self.memory = Memory(shape=shape, depth=depth, init=[])
        m.submodules[name] = self.memory
        self.rd = self.memory.read_port()
        self.wr = self.memory.write_port()
        self.data = self.rd.data

    def read(self, m: Module, addr) -> None:
        m.d.comb += self.rd.addr.eq(addr)

    def write(self, m: Module, addr, data) -> None:
        m.d.comb += [self.wr.addr.eq(addr), self.wr.data.eq(data), self.wr.en.eq(1)]

    def forward(self, frac: int):
        """The forward part of the word read (a learning weight's top bits)."""
        return _top(self.data, frac)

    @property
    def readback(self):
        return self.data


class _Packed:
    """Several arrays packed into one single-port memory of ``width``-bit words (an SPRAM).

    Each array takes the largest power of two of elements per word that
    fits (two 8-bit weights, four 4-bit counts, one 16-bit word) from its
    own base address; a write enables only its element's lanes
    (``granularity`` bits each). One address serves reads and writes, one
    access per cycle (the read data stays as it was in the cycle after a
    write): the FSM never touches two arrays of one memory in the same
    cycle. The memory is named ``<name>_shared``
    (:func:`delrec.hw.synth.mark_spram` looks for it).

    ``arrays``: ``{name: (shape, depth, frac)}``; ``frac`` (or ``None``)
    makes a forward-only weight array: a write stores the learning copy's
    top bits ``data[frac:]``, a read-back returns them shifted back.
    """

    def __init__(self, m: Module, name: str, arrays: dict, width: int = 16):
        shapes = {key: Shape.cast(shape) for key, (shape, _, _) in arrays.items()}
        width = max([width] + [s.width for s in shapes.values()])
        lanes = {key: 1 << ((width // s.width).bit_length() - 1) for key, s in shapes.items()}
        granularity = width
        for key in arrays:
            granularity = math.gcd(granularity, width // lanes[key])
        bases, words = {}, 0
        for key, (_, depth, _) in arrays.items():
            bases[key] = words
            words += -(-depth // lanes[key])
        self.memory = Memory(shape=unsigned(width), depth=max(1, words), init=[])
        m.submodules[f"{name}_shared"] = self.memory
        self.rd = self.memory.read_port()
        self.wr = self.memory.write_port(granularity=granularity)
        m.d.comb += [self.wr.addr.eq(self.rd.addr), self.rd.en.eq(~self.wr.en.any())]
        self.regions = {key: _Region(m, self, key, bases[key], depth, shapes[key], lanes[key], width,
                                     granularity, frac)
                        for key, (_, depth, frac) in arrays.items()}

    def __getitem__(self, key):
        return self.regions[key]


class _Region:
    """One array of a :class:`_Packed` memory, used like :class:`_Ram`."""

    def __init__(self, m, packed, name, base, depth, shape, lanes, width, granularity, frac):
        self.packed, self.base, self.depth, self.shape = packed, base, depth, shape
        self.lanes, self.frac = lanes, frac
        self.lane_width = width // lanes
        self.shift = lanes.bit_length() - 1
        self.granules = self.lane_width // granularity
        self.sel = Signal(range(lanes), name=f"{name}_lane") if lanes > 1 else None
        self.data = Signal(shape, name=f"{name}_data")
        self.name = name
        words = packed.rd.data
        values = [words[n * self.lane_width:n * self.lane_width + shape.width] for n in range(lanes)]
        out = values[0]
        for n in range(1, lanes):
            out = Mux(self.sel == n, values[n], out)
        m.d.comb += self.data.eq(out)

    def _word(self, addr):
        return self.base + (Value.cast(addr).as_unsigned() >> self.shift)

    def read(self, m: Module, addr) -> None:
        m.d.comb += self.packed.rd.addr.eq(self._word(addr))
        if self.sel is not None:
            m.d.sync += self.sel.eq(Value.cast(addr)[:self.shift])

    def write(self, m: Module, addr, data) -> None:
        data = Value.cast(data)
        if self.frac is not None:
            data = data[self.frac:self.frac + self.shape.width]
        element = Signal(self.shape, name=f"{self.name}_write")   # extended or truncated
        m.d.comb += element.eq(data)
        lane = Cat(element, Const(0, self.lane_width - self.shape.width))
        if self.sel is None:
            enable = Const(-1, self.granules * self.lanes)
        else:
            which = Value.cast(addr)[:self.shift]
            enable = Cat(*[(which == n).replicate(self.granules) for n in range(self.lanes)])
        m.d.comb += [self.packed.rd.addr.eq(self._word(addr)),
                     self.packed.wr.data.eq(Cat(*[lane] * self.lanes)),
                     self.packed.wr.en.eq(enable)]

    def forward(self, frac: int):
        return self.data if self.frac is not None else _top(self.data, frac)

    @property
    def readback(self):
        """What a host read returns: the word, or a forward-only weight at its learning scale."""
        if self.frac is None:
            return self.data
        return Cat(Const(0, self.frac), self.data)


class OnlineCore(wiring.Component):
    """``C`` inputs -> ``N`` LIF neurons with learnable input delays -> ``K`` readouts, learning online.

    Runs the network of :class:`delrec.golden.online_fixed.FixedOnlineNetwork`
    (feedforward, soft reset, shift leak, readout without leak) one time
    step per ``last=1`` input beat, and with ``learning=True`` its
    three-factor rule with a per-sample learning signal, bit-exact in the
    order of :class:`delrec.arith.CoreSpec`:

    * **step** -- each input weight is read through its delay
      ``round(d) = (d + 2^(f-1)) >> f`` from an input history of ``H``
      steps; the neuron charges ``h = sat(leak(v) + b + sum w x)``, spikes at
      ``h >= theta`` (soft reset), and its readout weights are added to the
      outputs ``u``; the scores sum ``u`` from ``loss_start`` on;
    * **traces** (``LEARN``) -- per synapse (synaptic delays) or per input
      channel (axonal): the weight trace ``sat(leak(eps_w) + (x << tf))`` and
      the delay trace ``sat(leak(eps_d) + V)`` with ``D = sum_m lut[m 2^f -
      d] x[t - m]`` over the LUT's span (one history read per tap) and ``V =
      round(w D >> (weight_bits - 1))`` (synaptic) or ``D`` (axonal); the
      bias trace; then, for a neuron with ``psi = max(0, 2^psi_bits - |h -
      theta|) > 0``, the eligibility sums ``E += psi eps`` of its synapses;
    * **update** (a commit beat on ``signal``) -- the learning signal
      ``L_i`` (given, or broadcast from the readout errors with the readout
      weights), then ``w -= round(L E_w >> k_w)`` (saturated),
      ``d -= round(L E_d >> k_d)`` (synaptic) or ``d_c -= round(sum_i L_i
      w_ic E_d,ic >> k_d)`` (axonal; the old weights), clipped to ``[0,
      (D-1) 2^f]``, the biases, and with errors the readout
      ``W_out -= round(err spikes >> k_out)``.

    With ``signal="step"`` (axonal delays) the third factor is formed on
    chip every step that counts (``t >= loss_start``) and the update is
    applied at once, before the step's ``last=1`` spike beat, as
    :class:`~delrec.golden.online_fixed.FixedOnlineNetwork` does with a
    per-step signal and ``update_every=1``; the input weights and biases do
    not learn (the ``LEARN_WEIGHTS`` flag is ignored):

    * **errors and broadcast** -- ``err_k = u_k - theta [k = LABEL]``,
      ``e_k = clamp(round(err_k >> spec.step_error_shift), +-top)``,
      ``L_i = sat(round(sum_k e_k w_out[k, i] >> (weight_bits - 1)))`` with
      the readout weights before this step's update (their top
      ``weight_bits + spec.feedback_frac_bits`` bits, the shift that much
      larger), and
      ``W_out[k, i] -= round(err_k >> k_out)`` for every neuron that fired
      (saturated), the readout biases ``-= round(err_k >> k_out)``;
    * **delays** -- ``d_c -= round(S_c eps_d,c >> k_d)``, clipped to
      ``[0, (D-1) 2^f]``, with the back-projection
      ``S_c = sum_i L_i psi_i w_ic`` over the forward input weights.

    The state it keeps is one delay trace per channel and ``psi``, the
    spike and ``L psi`` per neuron, instead of two eligibility sums per
    synapse. The input weights (their forward ``weight_bits``: they do not
    learn; a read-back returns them at the learning copy's scale), the
    readout weights and the input history are packed in one single-port
    memory (two weights or four counts per 16-bit word, lane write
    enables), the recurrent weights in another: the UP5K's SPRAM holds them.

    Every memory is an :class:`~amaranth.lib.memory.Memory` with one
    synchronous read port and one write port (block RAM; the packed ones
    with one address for both); every sum is
    exact by the widths of :class:`~delrec.hw.online_ports.OnlineGeometry`.

    Cycles (one memory access per array per cycle, simple FSM control; the
    exact counts are :func:`~delrec.hw.online_ports.step_cycles` and
    :func:`~delrec.hw.online_ports.update_cycles`, checked against the
    counters in every co-simulation without stalls):

    * input: 2 per event;
    * step (its ``last=1`` input beat to its ``last=1`` spike beat, the
      ``STEP_CYCLES`` counter): inference ``2K + 1 + C + N (5 + 2C)``
      (synaptic; axonal ``2K + 1 + 3C + N (5 + C)``) ``+ K + 1`` per
      spike; learning adds, per synapse
      (axonal: per channel), one trace write and the LUT taps -- the
      integers ``m`` in ``[0, t]`` with ``|m 2^f - d| <= R`` -- and ``C``
      per neuron with ``psi > 0`` (its eligibility sums);
    * update: ``2 + 2 N K + K`` (errors: broadcast and readout) ``+ N C + N``
      (``+ C`` axonal) when weights or delays learn;
    * per-step update (``signal="step"``, a learning step that counts):
      ``N K + K s + K`` (broadcast and readout, ``s`` spikes)
      ``+ C (N + 2)`` when delays learn;
    * ``CLEAR``: ``max(N C, H C)`` (every state memory zeroed in parallel).

    Parameters
    ----------
    inputs, neurons, classes : int
        ``C``, ``N``, ``K``.
    spec : OnlineArithmetic
        Widths, threshold, leak shift and the rule's fixed-point formats.
    delay_kind : {"synaptic", "axonal"}
        One input delay per synapse or one per input channel.
    max_reach : int
        Largest LUT half-width ``R`` (in ``2^-f`` steps) the host may load.
    max_steps : int
        Longest sample while learning (sizes the exact sums); a step beyond
        it is refused (``OVERRUNS``) while ``LEARN`` is on.
    count_bits : int
        Width of one channel's event count per step; an event beyond it is
        dropped and counted (``DROPPED_EVENTS``).
    learning : bool
        Build the learning unit (traces, eligibility sums, LUT, update
        datapath, the ``signal`` stream). Without it the core is the same
        network for inference only: the difference is the unit's cost.
    signal : {"sample", "step"}
        The learning signal's mode (see above); ``"step"`` needs axonal delays.
    recurrent : bool
        A recurrent layer (per-step signal): neuron ``j``'s spikes are
        history channel ``C + j``, read at ``1 + round(d_{C+j})`` steps
        through a learnable axonal delay and weighted by ``W_REC``. Every
        ``C`` of the delayed reads, traces, cycles and back-projection is
        then ``C + N``.

    Attributes
    ----------
    inputs : In(stream.Signature(geometry.input_layout()))
    spikes : Out(stream.Signature(geometry.spike_layout()))
    signal : In(stream.Signature(geometry.signal_layout()))
        Only with ``learning`` and a per-sample signal. Beats with an index
        outside ``K`` (errors) or ``N`` (signals) are dropped and counted
        (``BAD_SIGNALS``); entries not sent since ``CLEAR`` are 0.
    write : In(stream.Signature(geometry.write_layout()))
        Ready only between steps; a write outside its target is dropped.
    read : In(stream.Signature(geometry.read_layout()))
    read_data : Out(stream.Signature(geometry.read_data_layout()))
        Raw bits, zero-extended; 0 for an address outside the target.
    busy : Out(1)
    """

    def __init__(self, *, inputs: int, neurons: int, classes: int, spec: OnlineArithmetic,
                 delay_kind: str = "synaptic", max_reach: int = 768, max_steps: int = 255,
                 count_bits: int = 4, learning: bool = True, signal: str = "sample",
                 recurrent: bool = False):
        self.geometry = g = OnlineGeometry(inputs, neurons, classes, spec, delay_kind, max_reach,
                                           max_steps, count_bits, signal, recurrent)
        self.learning = bool(learning)
        members = {
            "inputs": In(stream.Signature(g.input_layout())),
            "spikes": Out(stream.Signature(g.spike_layout())),
            "write": In(stream.Signature(g.write_layout())),
            "read": In(stream.Signature(g.read_layout())),
            "read_data": Out(stream.Signature(g.read_data_layout())),
            "busy": Out(1),
        }
        self.per_sample = self.learning and g.signal == "sample"
        self.per_step = self.learning and g.signal == "step"
        if self.per_sample:
            members["signal"] = In(stream.Signature(g.signal_layout()))
        super().__init__(members)

    def elaborate(self, platform):
        g = self.geometry
        s = g.spec
        C, N, K = g.inputs, g.neurons, g.classes
        f, wfrac, tf = s.delay_frac_bits, s.weight_frac_bits, s.trace_frac_bits
        wb = s.weight_bits
        synaptic = g.delay_kind == "synaptic"
        learning, per_sample, per_step = self.learning, self.per_sample, self.per_step
        H = g.history_rows
        rec = g.recurrent
        CH = g.channels                      # history channels: inputs, then (recurrent) spikes
        m = Module()

        # -- memories ----------------------------------------------------------------------
        def ram(name, shape, depth):
            return _Ram(m, name, shape, depth)

        packed = g.signal == "step"
        if packed:
            # input weights (forward part: they do not learn), readout weights and the input
            # history share one single-port memory, the recurrent weights another (SPRAM)
            shared = _Packed(m, "weights", {
                "w_in": (signed(wb), N * C, wfrac),
                "w_out": (signed(g.weight_width), K * N, None),
                "history": (unsigned(g.count_bits), H * CH, None)})
            w_in, w_out, hist = shared["w_in"], shared["w_out"], shared["history"]
            w_rec = _Packed(m, "recurrent", {"w_rec": (signed(wb), N * N, wfrac)})["w_rec"] \
                if rec else None
        else:
            w_in = ram("w_in", signed(g.weight_width), N * C)
            w_out = ram("w_out", signed(g.weight_width), K * N)
            hist = ram("history", unsigned(g.count_bits), H * CH)
            w_rec = None
        delay = ram("delay", unsigned(g.delay_width), g.delay_count)
        bias = ram("bias", signed(g.bias_width), N)
        b_out = ram("b_out", signed(g.bias_width), K)
        v_mem = ram("membrane", signed(s.v_bits), N)
        u_mem = ram("output", signed(g.output_width), K)
        score = ram("score", signed(g.score_width), K)
        prebuf = None if synaptic else ram("delayed_input", unsigned(g.count_bits), CH)
        state_mems = [v_mem, hist, u_mem, score]
        tr_w = None
        if learning:
            lut = ram("lut", signed(s.lut_bits), g.lut_depth)
            tr_d = ram("trace_d", signed(s.trace_bits), g.delay_count)
            sig = ram("learning_signal", signed(s.signal_bits), N)
            state_mems += [tr_d, sig]
        if per_step:
            psi_spike = ram("psi_spike", unsigned(g.psi_width + 1), N)   # {spike, psi} of the step
            back = ram("back_signal", signed(g.back_signal_width), N)    # L_i psi_i
        if per_sample:
            tr_w = ram("trace_w", signed(s.trace_bits), g.delay_count)
            tr_b = ram("trace_b", signed(s.trace_bits), N)
            el_w = ram("elig_w", signed(g.eligibility_width), N * C)
            el_d = ram("elig_d", signed(g.eligibility_width), N * C)
            el_b = ram("elig_b", signed(g.eligibility_width), N)
            cnt = ram("spike_count", unsigned(g.step_bits), N)
            err = ram("error", signed(s.signal_bits), K)
            state_mems += [tr_w, tr_b, el_w, el_d, el_b, cnt, err]

        # -- registers -----------------------------------------------------------------------
        flags = Signal(len(OnlineFlag))
        reach = Signal(range(g.max_reach + 1))
        loss_start = Signal(COUNTER_BITS)
        k_w, k_d, k_out = (Signal(g.shift_bits) for _ in range(3))
        label = Signal(g.signal_index_bits)
        learn = flags[0] if learning else Const(0)
        learn_w, learn_d, readout_bias = flags[1], flags[2], flags[3]

        t = Signal(COUNTER_BITS)                 # steps since CLEAR
        t_near = Signal(range(2 * H))            # min(t, 2H - 1): lags are compared with it
        counted = Signal(g.step_bits)            # of which from loss_start on (saturating:
                                                 # only learning samples, <= max_steps, use it)
        counting = Signal()                      # this step counts (t >= loss_start)
        step_cycles, last_step_cycles = Signal(COUNTER_BITS), Signal(COUNTER_BITS)
        update_cycles, last_update_cycles = Signal(COUNTER_BITS), Signal(COUNTER_BITS)
        dropped_events, bad_signals, overruns = (Signal(COUNTER_BITS) for _ in range(3))

        i = Signal(range(N + 1))
        j = Signal(range(CH + 1))
        k = Signal(range(K + 1))
        a = Signal(range(N * C + C + K * N + 1))   # synapse or readout address
        a_base = Signal.like(a)
        ar = Signal(range(N * N + N + 1))          # recurrent synapse i * N + (j - C)
        ar_base = Signal.like(ar)
        is_rec = (j >= C) if rec else Const(0)     # channel j carries the layer's own spikes
        ka = Signal(range(K * N + N + 1))          # readout address k * N + i

        cur = Signal(signed(g.current_width))
        v_reg = Signal(signed(s.v_bits))
        w_reg = Signal(signed(g.weight_width))
        psi = Signal(g.psi_width)
        spike = Signal()
        channel = Signal(g.channel_bits)
        commit_error = Signal()

        row_now = Signal(range(H))               # t mod H: the history row of this step

        def row_back(lag):
            """``(t - lag) mod H`` for ``0 <= lag <= H``."""
            diff = Signal(signed(len(row_now) + 2))
            m.d.comb += diff.eq(row_now - lag)
            return Mux(diff < 0, diff + H, diff)

        def hist_addr(row, ch):
            return _times(row.as_unsigned()[:len(row_now)], CH) + ch

        row_next = Mux(row_now == H - 1, 0, row_now + 1)

        # the delayed read and its tap window, from the delay word on ``delay.data``
        d_now = delay.data
        lag = (d_now + (1 << (f - 1))) >> f if f else d_now
        lag_ok = Signal()
        pre = Signal(g.count_bits)
        # learning-unit registers
        if learning:
            trw_reg = Signal(signed(s.trace_bits))
            trd_reg = Signal(signed(s.trace_bits))
            trb_reg = Signal(signed(s.trace_bits))
            elb_reg = Signal(signed(g.eligibility_width))
            cnt_reg = Signal(g.step_bits)
            dsum = Signal(signed(g.derivative_width))
            tap_m = Signal(range(2 * H))     # lags stay below H (OnlineGeometry.history_rows)
            tap_hi = Signal(range(2 * H))
            tap_idx = Signal(range(g.lut_depth + (1 << f) + 1))
            has_taps = Signal()
            lo = Signal(signed(g.delay_width + 2))
            m.d.comb += lo.eq(d_now - reach)
            m_lo_raw = (lo + ((1 << f) - 1)) >> f
            m_lo = Mux(m_lo_raw < 0, 0, m_lo_raw)
            m_hi_raw = (d_now + reach) >> f
            t_limit = Signal(signed(len(t_near) + 1))   # the last tap read: m + is_rec <= t
            m.d.comb += t_limit.eq(t_near - is_rec)
            m_hi = Mux(m_hi_raw > t_limit, t_limit, m_hi_raw)
            acc = Signal(signed(s.signal_bits + g.eligibility_width + wb + g.neuron_bits + 2))
            bc_acc = Signal(signed(s.signal_bits + wb + s.feedback_frac_bits + g.signal_index_bits + 2))
        if per_step:
            back_acc = Signal(signed(g.back_projection_width))          # S_c
            back_prod = Signal(signed(g.back_projection_width + s.trace_bits))  # S_c eps_d,c
            delay_reg = Signal(unsigned(g.delay_width))

        # -- stream defaults -----------------------------------------------------------------
        idle = Signal()
        m.d.comb += [
            self.write.ready.eq(idle),
            self.read.ready.eq(idle & ~self.write.valid),
            self.inputs.ready.eq(idle & ~self.write.valid & ~self.read.valid
                                 & ~(self.signal.valid if per_sample else 0)),
        ]
        if per_sample:
            m.d.comb += self.signal.ready.eq(idle & ~self.write.valid & ~self.read.valid)
        read_target = Signal(OnlineReadTarget)
        read_addr = Signal(g.addr_bits)
        clear_addr = Signal(range(max(mem.depth for mem in state_mems) + 1))
        in_step = Signal()
        in_update = Signal()
        with m.If(in_step):
            m.d.sync += step_cycles.eq(step_cycles + 1)
        with m.If(in_update):
            m.d.sync += update_cycles.eq(update_cycles + 1)

        def delay_read_states(prefix: str, trace_addr, after_pre, delay_value, next_item):
            """LAG -> PRE -> [TAP...] -> WRITE of one delayed read (a synapse or a channel).

            Entered with the reads of ``delay``/``w_in``/traces at the item's
            address issued; ``after_pre(pre)`` consumes the delayed count,
            ``delay_value`` is the delay trace's increment from ``dsum``,
            ``next_item()`` advances (issues the next item's reads) and
            returns nothing; it is called in the last state of the item.
            """
            with m.State(f"{prefix}_LAG"):
                m.d.sync += [w_reg.eq(w_in.data), lag_ok.eq(lag + is_rec <= t_near)]
                hist.read(m, hist_addr(row_back(lag + is_rec), j))
                if learning:
                    m.d.sync += [trd_reg.eq(tr_d.data),
                                 tap_m.eq(m_lo), tap_hi.eq(m_hi), has_taps.eq(m_lo <= m_hi),
                                 tap_idx.eq((m_lo << f) - d_now + reach)]
                    if per_sample:
                        m.d.sync += trw_reg.eq(tr_w.data)
                m.next = f"{prefix}_PRE"
            with m.State(f"{prefix}_PRE"):
                value = Mux(lag_ok, hist.data, 0)
                m.d.comb += pre.eq(value)
                after_pre(value)
                if learning:
                    m.d.sync += [dsum.eq(0), pre_reg.eq(value)]
                    with m.If(learn & learn_d & has_taps):
                        hist.read(m, hist_addr(row_back(tap_m + is_rec), j))
                        lut.read(m, tap_idx)
                        m.next = f"{prefix}_TAP"
                    with m.Elif(learn):
                        m.next = f"{prefix}_WRITE"
                    with m.Else():
                        next_item()
                else:
                    next_item()
            if learning:
                with m.State(f"{prefix}_TAP"):
                    m.d.sync += dsum.eq(dsum + lut.data * hist.data)
                    with m.If(tap_m == tap_hi):
                        m.next = f"{prefix}_WRITE"
                    with m.Else():
                        m.d.sync += [tap_m.eq(tap_m + 1), tap_idx.eq(tap_idx + (1 << f))]
                        hist.read(m, hist_addr(row_back(tap_m + 1 + is_rec), j))
                        lut.read(m, tap_idx + (1 << f))
                with m.State(f"{prefix}_WRITE"):
                    new_d = saturate(decay(trd_reg, s.leak_shift, "shift", 0) + delay_value, s.trace_bits)
                    tr_d.write(m, trace_addr, Mux(learn_d, new_d, trd_reg))
                    if per_sample:
                        new_w = saturate(decay(trw_reg, s.leak_shift, "shift", 0) + (pre_reg << tf), s.trace_bits)
                        tr_w.write(m, trace_addr, Mux(learn_w, new_w, trw_reg))
                    next_item()

        if learning:
            pre_reg = Signal(g.count_bits)

        # -- the FSM -------------------------------------------------------------------------
        with m.FSM(name="control"):
            with m.State("IDLE"):
                m.d.comb += idle.eq(1)
                wp, rp = self.write.payload, self.read.payload
                with m.If(self.write.valid):
                    self._host_write(m, wp, locals())
                with m.Elif(self.read.valid):
                    m.d.sync += [read_target.eq(rp.target), read_addr.eq(rp.addr)]
                    m.next = "READ_ISSUE"
                if per_sample:
                    sp = self.signal.payload
                    with m.Elif(self.signal.valid):
                        with m.If(sp.last):
                            m.d.sync += [commit_error.eq(sp.kind == SignalKind.ERROR),
                                         update_cycles.eq(1), in_update.eq(1), i.eq(0), k.eq(0),
                                         ka.eq(0), bc_acc.eq(0)]
                            with m.If(sp.kind == SignalKind.ERROR):
                                err.read(m, 0)
                                w_out.read(m, 0)
                                m.next = "BC_MAC"
                            with m.Else():
                                m.next = "SYN_UPD_START"
                        with m.Elif((sp.kind == SignalKind.ERROR) & (sp.index < K)):
                            err.write(m, sp.index, sp.value)
                        with m.Elif((sp.kind == SignalKind.NEURON) & (sp.index < N)):
                            sig.write(m, sp.index, sp.value)
                        with m.Else():
                            m.d.sync += bad_signals.eq(bad_signals + 1)
                ip = self.inputs.payload
                with m.Elif(self.inputs.valid):
                    with m.If(ip.last):
                        with m.If(learn & (t >= g.max_steps)):
                            m.d.sync += overruns.eq(overruns + 1)
                            m.next = "REFUSE_STEP"
                        with m.Else():
                            m.d.sync += [step_cycles.eq(1), in_step.eq(1), k.eq(0),
                                         counting.eq(t >= loss_start), i.eq(0), j.eq(0), a.eq(0)]
                            b_out.read(m, 0)
                            m.next = "INIT_OUTPUT"
                    with m.Elif(ip.channel < C):
                        hist.read(m, hist_addr(row_now, ip.channel))
                        m.d.sync += channel.eq(ip.channel)
                        m.next = "EVENT"
                    with m.Else():
                        m.d.sync += dropped_events.eq(dropped_events + 1)

            with m.State("EVENT"):
                full = hist.data == (1 << g.count_bits) - 1
                with m.If(full):
                    m.d.sync += dropped_events.eq(dropped_events + 1)
                with m.Else():
                    hist.write(m, hist_addr(row_now, channel), hist.data + 1)
                m.next = "IDLE"

            with m.State("REFUSE_STEP"):
                m.d.comb += [self.spikes.valid.eq(1), self.spikes.payload.last.eq(1)]
                with m.If(self.spikes.ready):
                    m.next = "IDLE"

            with m.State("CLEAR"):
                for mem in state_mems:
                    with m.If(clear_addr < mem.depth):
                        mem.write(m, clear_addr, 0)
                m.d.sync += clear_addr.eq(clear_addr + 1)
                with m.If(clear_addr == max(mem.depth for mem in state_mems) - 1):
                    m.d.sync += [t.eq(0), t_near.eq(0), counted.eq(0), row_now.eq(0)]
                    m.next = "IDLE"

            # -- reads ---------------------------------------------------------------------
            sources = self._read_sources(locals())
            for state in ("READ_ISSUE", "READ_OUT"):
                with m.State(state):
                    with m.Switch(read_target):
                        for target, (mem, _) in sources.items():
                            if isinstance(mem, (_Ram, _Region)):
                                with m.Case(target):
                                    mem.read(m, read_addr)
                    if state == "READ_ISSUE":
                        m.next = "READ_OUT"
                    else:
                        value = Signal(g.read_data_bits)
                        with m.Switch(read_target):
                            for target, (mem, limit) in sources.items():
                                with m.Case(target):
                                    raw = mem.readback if isinstance(mem, (_Ram, _Region)) else mem
                                    m.d.comb += value.eq(Mux(read_addr < limit,
                                                             raw.as_unsigned(), 0))
                        m.d.comb += [self.read_data.valid.eq(1), self.read_data.payload.data.eq(value)]
                        with m.If(self.read_data.ready):
                            m.next = "IDLE"

            # -- one step ------------------------------------------------------------------
            with m.State("INIT_OUTPUT"):
                u_mem.write(m, k, _top(b_out.data, wfrac))
                with m.If(k == K - 1):
                    m.d.sync += [k.eq(0), j.eq(0), i.eq(0), a.eq(0), ar_base.eq(0)]
                    if synaptic:
                        m.next = "NEURON_READ"
                    else:
                        delay.read(m, 0)
                        if learning:
                            if per_sample:
                                tr_w.read(m, 0)
                            tr_d.read(m, 0)
                        m.next = "CH_LAG"
                with m.Else():
                    m.d.sync += k.eq(k + 1)
                    b_out.read(m, k + 1)

            if not synaptic:  # one delayed read per input channel, before the neurons
                def channel_pre(value):
                    prebuf.write(m, j, value)

                def next_channel():
                    with m.If(j == CH - 1):
                        m.d.sync += [j.eq(0), i.eq(0), a.eq(0)]
                        m.next = "NEURON_READ"
                    with m.Else():
                        m.d.sync += j.eq(j + 1)
                        delay.read(m, j + 1)
                        if learning:
                            if per_sample:
                                tr_w.read(m, j + 1)
                            tr_d.read(m, j + 1)
                        m.next = "CH_LAG"

                delay_read_states("CH", j, channel_pre, dsum if learning else None, next_channel)

            with m.State("NEURON_READ"):
                v_mem.read(m, i)
                bias.read(m, i)
                if per_sample:
                    for mem in (tr_b, el_b, cnt):
                        mem.read(m, i)
                m.next = "NEURON_LATCH"

            def issue_synapse(addr, ch, rec_addr=None):
                if rec:   # the layer's own spikes come after the inputs
                    with m.If(ch < C):
                        w_in.read(m, addr)
                    with m.Else():
                        w_rec.read(m, rec_addr)
                else:
                    w_in.read(m, addr)
                if synaptic:
                    delay.read(m, addr)
                    if learning:
                        if per_sample:
                            tr_w.read(m, addr)
                        tr_d.read(m, addr)
                else:
                    prebuf.read(m, ch)

            with m.State("NEURON_LATCH"):
                m.d.sync += [v_reg.eq(v_mem.data), cur.eq(_top(bias.data, wfrac)), j.eq(0),
                             a_base.eq(a), ar.eq(ar_base)]
                if per_sample:
                    m.d.sync += [trb_reg.eq(tr_b.data), elb_reg.eq(el_b.data), cnt_reg.eq(cnt.data)]
                issue_synapse(a, 0, ar_base)
                m.next = "SYN_LAG" if synaptic else "SYN_MAC"

            def next_synapse():
                with m.If(j == CH - 1):
                    m.next = "NEURON_UPDATE"
                with m.Else():
                    m.d.sync += [j.eq(j + 1), a.eq(a + 1)]
                    if rec:
                        with m.If(j + 1 >= C):
                            m.d.sync += ar.eq(ar + 1)
                    issue_synapse(a + 1, j + 1, ar)
                    m.next = "SYN_LAG" if synaptic else "SYN_MAC"

            if synaptic:
                def synapse_pre(value):
                    m.d.sync += cur.eq(cur + _top(w_reg, wfrac) * value)

                delay_value = None
                if learning:
                    delay_value = rshift_round(_top(w_reg, wfrac) * dsum, wb - 1)
                delay_read_states("SYN", a, synapse_pre, delay_value, next_synapse)
            else:
                with m.State("SYN_MAC"):
                    weight = Mux(is_rec, w_rec.forward(wfrac), w_in.forward(wfrac)) if rec else \
                        w_in.forward(wfrac)
                    m.d.sync += cur.eq(cur + weight * prebuf.data)
                    next_synapse()

            with m.State("NEURON_UPDATE"):
                h = Signal(signed(s.v_bits))
                m.d.comb += h.eq(saturate(decay(v_reg, s.leak_shift, "shift", 0) + cur, s.v_bits))
                fired = h >= s.theta
                dist = Signal(s.v_bits + 1)
                m.d.comb += dist.eq(Mux(h >= s.theta, h - s.theta, s.theta - h))
                psi_now = Mux(dist >= (1 << s.psi_bits), 0, (1 << s.psi_bits) - dist)
                v_mem.write(m, i, Mux(fired, saturate(h - s.theta, s.v_bits), h))
                m.d.sync += [psi.eq(psi_now), spike.eq(fired)]
                if per_step:
                    psi_spike.write(m, i, Cat(psi_now[:g.psi_width], fired))
                if rec:   # this step's spike, read from the next step on
                    hist.write(m, hist_addr(row_now, C + i), fired)
                if per_sample:
                    new_trb = Mux(learn_w, saturate(decay(trb_reg, s.leak_shift, "shift", 0) + (1 << tf),
                                                    s.trace_bits), trb_reg)
                    with m.If(learn):
                        tr_b.write(m, i, new_trb)
                        with m.If(counting):
                            el_b.write(m, i, Mux(learn_w, elb_reg + psi_now * new_trb, elb_reg))
                        with m.If(counting):
                            cnt.write(m, i, cnt_reg + fired)
                with m.If(fired):
                    m.next = "SPIKE_OUT"
                with m.Else():
                    m.next = "ELIG_START"

            with m.State("SPIKE_OUT"):
                m.d.comb += [self.spikes.valid.eq(1), self.spikes.payload.neuron.eq(i)]
                with m.If(self.spikes.ready):
                    u_mem.read(m, 0)
                    w_out.read(m, i)
                    m.d.sync += [k.eq(0), ka.eq(i)]
                    m.next = "READOUT_ADD"

            with m.State("READOUT_ADD"):
                u_mem.write(m, k, u_mem.data + _top(w_out.data, wfrac))
                with m.If(k == K - 1):
                    m.next = "ELIG_START"
                with m.Else():
                    m.d.sync += [k.eq(k + 1), ka.eq(ka + N)]
                    u_mem.read(m, k + 1)
                    w_out.read(m, ka + N)

            with m.State("ELIG_START"):
                if per_sample:
                    with m.If(learn & counting & (psi != 0) & (learn_w | learn_d)):
                        m.d.sync += [j.eq(0), a.eq(a_base)]
                        el_w.read(m, a_base)
                        el_d.read(m, a_base)
                        tr_w.read(m, a_base if synaptic else 0)
                        tr_d.read(m, a_base if synaptic else 0)
                        m.next = "ELIG"
                    with m.Else():
                        m.next = "NEXT_NEURON"
                else:
                    m.next = "NEXT_NEURON"

            if per_sample:
                with m.State("ELIG"):
                    el_w.write(m, a, Mux(learn_w, el_w.data + psi * tr_w.data, el_w.data))
                    el_d.write(m, a, Mux(learn_d, el_d.data + psi * tr_d.data, el_d.data))
                    with m.If(j == C - 1):
                        m.next = "NEXT_NEURON"
                    with m.Else():
                        m.d.sync += [j.eq(j + 1), a.eq(a + 1)]
                        el_w.read(m, a + 1)
                        el_d.read(m, a + 1)
                        tr_w.read(m, a + 1 if synaptic else j + 1)
                        tr_d.read(m, a + 1 if synaptic else j + 1)

            with m.State("NEXT_NEURON"):
                m.d.sync += [a.eq(a_base + C), ar_base.eq(ar_base + N), i.eq(i + 1)]
                with m.If(i == N - 1):
                    m.d.sync += k.eq(0)
                    u_mem.read(m, 0)
                    score.read(m, 0)
                    m.next = "SCORE"
                with m.Else():
                    m.next = "NEURON_READ"

            with m.State("SCORE"):
                with m.If(counting):
                    score.write(m, k, score.data + u_mem.data)
                with m.If(k == K - 1):
                    m.d.sync += j.eq(0)
                    if per_step:  # this step's update, before its last spike beat
                        with m.If(learn & counting):
                            m.d.sync += [i.eq(0), k.eq(0), ka.eq(0), bc_acc.eq(0)]
                            w_out.read(m, 0)
                            u_mem.read(m, 0)
                            psi_spike.read(m, 0)
                            m.next = "STEP_BROADCAST"
                        with m.Else():
                            m.next = "CLEAR_ROW"
                    else:
                        m.next = "CLEAR_ROW"
                with m.Else():
                    m.d.sync += k.eq(k + 1)
                    u_mem.read(m, k + 1)
                    score.read(m, k + 1)

            with m.State("CLEAR_ROW"):  # the row the next step's events go to
                hist.write(m, hist_addr(row_next, j), 0)
                m.d.sync += j.eq(j + 1)
                with m.If(j == CH - 1):
                    m.next = "STEP_END"

            with m.State("STEP_END"):
                m.d.comb += [self.spikes.valid.eq(1), self.spikes.payload.last.eq(1)]
                with m.If(self.spikes.ready):
                    with m.If(t_near != 2 * H - 1):
                        m.d.sync += t_near.eq(t_near + 1)
                    with m.If(counting & (counted != (1 << g.step_bits) - 1)):
                        m.d.sync += counted.eq(counted + 1)
                    m.d.sync += [t.eq(t + 1), row_now.eq(row_next), in_step.eq(0),
                                 last_step_cycles.eq(step_cycles)]
                    m.next = "IDLE"

            # -- the update ----------------------------------------------------------------
            if per_sample:
                self._update_states(m, locals())
            if per_step:
                self._step_update_states(m, locals())

        m.d.comb += self.busy.eq(~idle)
        return m

    # -- pieces of the FSM -------------------------------------------------------------------
    def _host_write(self, m, wp, env):
        g = self.geometry
        T = OnlineWriteTarget
        mems = {T.W_IN: env["w_in"], T.DELAY: env["delay"], T.BIAS: env["bias"],
                T.W_OUT: env["w_out"], T.B_OUT: env["b_out"]}
        if g.recurrent:
            mems[T.W_REC] = env["w_rec"]
        if self.learning:
            mems[T.LUT] = env["lut"]
        with m.Switch(wp.target):
            for target, mem in mems.items():
                with m.Case(target):
                    with m.If(wp.addr < mem.depth):
                        mem.write(m, wp.addr, wp.data)
            with m.Case(T.CONFIG):
                R = OnlineConfigRegister
                regs = {R.FLAGS: env["flags"], R.REACH: env["reach"], R.LOSS_START: env["loss_start"],
                        R.LR_WEIGHT_SHIFT: env["k_w"], R.LR_DELAY_SHIFT: env["k_d"],
                        R.LR_READOUT_SHIFT: env["k_out"], R.LABEL: env["label"]}
                with m.Switch(wp.addr):
                    for addr, reg in regs.items():
                        with m.Case(addr):
                            if addr == R.REACH:  # a reach beyond the LUT is kept at its size
                                value = Mux(wp.data > g.max_reach, g.max_reach, wp.data)
                                m.d.sync += reg.eq(value)
                            else:
                                m.d.sync += reg.eq(wp.data)
            with m.Case(T.CLEAR):
                m.d.sync += env["clear_addr"].eq(0)
                m.next = "CLEAR"

    def _read_sources(self, env) -> dict:
        T = OnlineReadTarget
        out = {T.W_IN: env["w_in"], T.DELAY: env["delay"], T.BIAS: env["bias"],
               T.W_OUT: env["w_out"], T.B_OUT: env["b_out"], T.MEMBRANE: env["v_mem"],
               T.OUTPUT: env["u_mem"], T.SCORE: env["score"]}
        if self.geometry.recurrent:
            out[T.W_REC] = env["w_rec"]
        out = {key: (mem, mem.depth) for key, mem in out.items()}
        if self.learning:
            for key, name in ((T.TRACE_D, "tr_d"), (T.SIGNAL, "sig")):
                out[key] = (env[name], env[name].depth)
        if self.per_sample:
            for key, name in ((T.TRACE_W, "tr_w"), (T.TRACE_B, "tr_b"), (T.ELIG_W, "el_w"),
                              (T.ELIG_D, "el_d"), (T.ELIG_B, "el_b"), (T.SPIKE_COUNT, "cnt")):
                out[key] = (env[name], env[name].depth)
        counters = [env["last_step_cycles"], env["last_update_cycles"], env["t"],
                    env["dropped_events"], env["bad_signals"], env["overruns"]]
        assert len(counters) == len(OnlineCounter)
        out[T.COUNTER] = (_select(env["read_addr"], counters), len(counters))
        R = OnlineConfigRegister
        regs = [env["flags"], env["reach"], env["loss_start"], env["k_w"], env["k_d"], env["k_out"],
                env["label"]]
        assert len(regs) == len(R)
        out[T.CONFIG] = (_select(env["read_addr"], regs), len(regs))
        return out

    def _step_update_states(self, m, env):
        """A per-step update (``signal="step"``): broadcast and readout, readout biases, delays."""
        g = self.geometry
        s = g.spec
        C, N, K = g.inputs, g.neurons, g.classes
        CH, rec = g.channels, g.recurrent
        wfrac = s.weight_frac_bits
        e = SimpleNamespace(**env)
        i, j, k, a, ka = e.i, e.j, e.k, e.a, e.ka
        top = (1 << (s.signal_bits - 1)) - 1

        # the error of class k from this step's output (on u_mem.data): exact, and its signal
        err = Signal(signed(g.output_width + 1))
        m.d.comb += err.eq(e.u_mem.data - Mux(k == e.label, s.theta, 0))
        err_signal = _clamp(rshift_round(err, s.step_error_shift), -top, top)
        err_step = _rshift_round(err, e.k_out)                 # round(err_k >> k_out)
        psi = e.psi_spike.data[:g.psi_width]
        fired = e.psi_spike.data[g.psi_width]

        def next_broadcast():
            """Issue the reads of the next (i, k), or go on to the readout biases."""
            with m.If(k == K - 1):
                with m.If(i == N - 1):
                    m.d.sync += k.eq(0)
                    e.b_out.read(m, 0)
                    e.u_mem.read(m, 0)
                    m.next = "STEP_BIAS_OUT"
                with m.Else():
                    m.d.sync += [i.eq(i + 1), k.eq(0), ka.eq(i + 1)]
                    e.w_out.read(m, i + 1)
                    e.u_mem.read(m, 0)
                    e.psi_spike.read(m, i + 1)
                    m.next = "STEP_BROADCAST"
            with m.Else():
                m.d.sync += [k.eq(k + 1), ka.eq(ka + N)]
                e.w_out.read(m, ka + N)
                e.u_mem.read(m, k + 1)
                e.psi_spike.read(m, i)
                m.next = "STEP_BROADCAST"

        # neuron i, class k at ka = k N + i: L_i sums the old weights; a neuron that fired
        # writes its new weight back (one address: the next read waits a cycle)
        with m.State("STEP_BROADCAST"):
            total = e.bc_acc + err_signal * _feedback_weight(e.w_out.data, s)
            with m.If(k == K - 1):
                L = Signal(signed(s.signal_bits))
                m.d.comb += L.eq(_broadcast_signal(total, s))
                e.sig.write(m, i, L)
                e.back.write(m, i, L * psi)
                m.d.sync += e.bc_acc.eq(0)
            with m.Else():
                m.d.sync += e.bc_acc.eq(total)
            with m.If(fired):
                e.w_out.write(m, ka, saturate(e.w_out.data - err_step, g.weight_width))
                m.next = "STEP_WRITTEN"
            with m.Else():
                next_broadcast()

        with m.State("STEP_WRITTEN"):
            next_broadcast()

        with m.State("STEP_BIAS_OUT"):
            with m.If(e.readout_bias):
                e.b_out.write(m, k, saturate(e.b_out.data - err_step, g.bias_width))
            with m.If(k == K - 1):
                with m.If(e.learn_d):
                    m.d.sync += [i.eq(0), j.eq(0), a.eq(0), e.back_acc.eq(0)]
                    e.w_in.read(m, 0)
                    e.back.read(m, 0)
                    m.next = "STEP_BACK"
                with m.Else():
                    m.d.sync += j.eq(0)
                    m.next = "CLEAR_ROW"
            with m.Else():
                m.d.sync += k.eq(k + 1)
                e.b_out.read(m, k + 1)
                e.u_mem.read(m, k + 1)

        # S_c = sum_i L_i psi_i w_ic over synapse a = i C + c (a column of the input weights)
        with m.State("STEP_BACK"):
            weight = e.w_in.forward(wfrac)
            if rec:
                weight = Mux(e.is_rec, e.w_rec.forward(wfrac), weight)
            total = e.back_acc + e.back.data * weight
            m.d.sync += e.back_acc.eq(total)
            with m.If(i == N - 1):
                e.delay.read(m, j)
                e.tr_d.read(m, j)
                m.next = "STEP_PRODUCT"
            with m.Else():
                m.d.sync += [i.eq(i + 1), a.eq(a + C)]
                e.back.read(m, i + 1)
                if rec:
                    m.d.sync += e.ar.eq(e.ar + N)
                    with m.If(e.is_rec):
                        e.w_rec.read(m, e.ar + N)
                    with m.Else():
                        e.w_in.read(m, a + C)
                else:
                    e.w_in.read(m, a + C)

        with m.State("STEP_PRODUCT"):
            m.d.sync += [e.back_prod.eq(e.back_acc * e.tr_d.data), e.delay_reg.eq(e.delay.data)]
            m.next = "STEP_DELAY"

        # d_c -= round(S_c eps_d,c >> k_d), clipped
        with m.State("STEP_DELAY"):
            step = _rshift_round(e.back_prod, e.k_d)
            e.delay.write(m, j, _clamp(e.delay_reg - step, 0, s.delay_max))
            m.d.sync += [e.back_acc.eq(0), i.eq(0)]
            with m.If(j == CH - 1):
                m.d.sync += j.eq(0)
                m.next = "CLEAR_ROW"
            with m.Else():
                m.d.sync += [j.eq(j + 1), a.eq(j + 1)]
                e.back.read(m, 0)
                m.next = "STEP_BACK"
                if rec:   # column j + 1 of the input weights, or of the recurrent ones
                    m.d.sync += e.ar.eq(j + 1 - C)
                    with m.If(j + 1 < C):
                        e.w_in.read(m, j + 1)
                    with m.Else():
                        e.w_rec.read(m, j + 1 - C)
                else:
                    e.w_in.read(m, j + 1)

    def _update_states(self, m, env):
        """Broadcast, readout, synapse, delay and bias updates after a commit beat."""
        g = self.geometry
        s = g.spec
        C, N, K = g.inputs, g.neurons, g.classes
        wfrac = s.weight_frac_bits
        synaptic = g.delay_kind == "synaptic"
        e = SimpleNamespace(**env)
        i, j, k, a, ka = e.i, e.j, e.k, e.a, e.ka
        learn_w, learn_d = e.learn_w, e.learn_d

        # Two shared multiply-and-round lanes (one variable shifter each): ``step_a`` for
        # weights, biases and the readout, ``step_d`` for delays; each state drives their inputs.
        a_factor = Signal(signed(s.signal_bits))
        a_value = Signal(signed(max(g.eligibility_width, g.step_bits + 1)))
        a_shift = Signal(g.shift_bits)
        step_a = _rshift_round(a_factor * a_value, a_shift)
        d_value = Signal(signed(len(e.acc)))
        step_d = _rshift_round(d_value, e.k_d)
        d_new = _clamp(e.delay.data - step_d, 0, s.delay_max)

        # ... and one subtract-and-saturate for lane A's parameters (weights: 16 bits, biases: 24)
        a_param = Signal(signed(max(g.weight_width, g.bias_width)))
        a_new = a_param - step_a
        a_weight = saturate(a_new, g.weight_width)
        a_bias = saturate(a_new, g.bias_width)

        def lane_a(factor, value, shift, param):
            m.d.comb += [a_factor.eq(factor), a_value.eq(value), a_shift.eq(shift), a_param.eq(param)]

        # L_i = sat(round(sum_k err_k B_ik >> (weight_bits - 1 + feedback_frac_bits))),
        # B_ik the feedback bits of w_out[k, i] (_feedback_weight, _broadcast_signal)
        with m.State("BC_MAC"):
            total = e.bc_acc + e.err.data * _feedback_weight(e.w_out.data, s)
            with m.If(k == K - 1):
                e.sig.write(m, i, _broadcast_signal(total, s))
                m.d.sync += [e.bc_acc.eq(0), k.eq(0)]
                with m.If(i == N - 1):
                    m.d.sync += [k.eq(0), i.eq(0), ka.eq(0)]
                    e.err.read(m, 0)
                    e.cnt.read(m, 0)
                    e.w_out.read(m, 0)
                    m.next = "READOUT_UPD"
                with m.Else():
                    m.d.sync += [i.eq(i + 1), ka.eq(i + 1)]
                    e.err.read(m, 0)
                    e.w_out.read(m, i + 1)
            with m.Else():
                m.d.sync += [e.bc_acc.eq(total), k.eq(k + 1), ka.eq(ka + N)]
                e.err.read(m, k + 1)
                e.w_out.read(m, ka + N)

        # W_out[k, i] -= round(err_k count_i >> k_out), address k * N + i
        with m.State("READOUT_UPD"):
            lane_a(e.err.data, e.cnt.data, e.k_out, e.w_out.data)
            e.w_out.write(m, ka, a_weight)
            last_i = i == N - 1
            next_i = Mux(last_i, 0, i + 1)
            next_k = Mux(last_i, k + 1, k)
            with m.If(last_i & (k == K - 1)):
                m.d.sync += k.eq(0)
                e.err.read(m, 0)
                e.b_out.read(m, 0)
                m.next = "BIAS_OUT_UPD"
            with m.Else():
                m.d.sync += [i.eq(next_i), k.eq(next_k), ka.eq(ka + 1)]
                e.err.read(m, next_k)
                e.cnt.read(m, next_i)
                e.w_out.read(m, ka + 1)

        with m.State("BIAS_OUT_UPD"):
            lane_a(e.err.data, e.counted, e.k_out, e.b_out.data)
            with m.If(e.readout_bias):
                e.b_out.write(m, k, a_bias)
            with m.If(k == K - 1):
                m.next = "SYN_UPD_START"
            with m.Else():
                m.d.sync += k.eq(k + 1)
                e.err.read(m, k + 1)
                e.b_out.read(m, k + 1)

        def issue(addr, neuron):
            for mem in (e.w_in, e.el_w, e.el_d):
                mem.read(m, addr)
            if synaptic:
                e.delay.read(m, addr)
            e.sig.read(m, neuron)

        with m.State("SYN_UPD_START"):
            m.d.sync += [i.eq(0), j.eq(0), a.eq(0), e.acc.eq(0)]
            with m.If(learn_w | learn_d):
                issue(0, 0)
                m.next = "SYN_UPD"
            with m.Else():
                m.next = "UPD_DONE"

        # synapse (i, j) at a = i * C + j, channel-major so that an axonal delay sums its column
        with m.State("SYN_UPD"):
            L = e.sig.data
            lane_a(L, e.el_w.data, e.k_w, e.w_in.data)
            with m.If(learn_w):
                e.w_in.write(m, a, a_weight)
            if synaptic:
                m.d.comb += d_value.eq(L * e.el_d.data)
                with m.If(learn_d):
                    e.delay.write(m, a, d_new)
            else:
                m.d.sync += e.acc.eq(e.acc + L * _top(e.w_in.data, wfrac) * e.el_d.data)
            with m.If(i == N - 1):
                if synaptic:
                    with m.If(j == C - 1):
                        m.d.sync += i.eq(0)
                        e.el_b.read(m, 0)
                        e.sig.read(m, 0)
                        e.bias.read(m, 0)
                        m.next = "BIAS_UPD"
                    with m.Else():
                        m.d.sync += [i.eq(0), j.eq(j + 1), a.eq(j + 1)]
                        issue(j + 1, 0)
                else:
                    e.delay.read(m, j)
                    m.next = "DELAY_UPD"
            with m.Else():
                m.d.sync += [i.eq(i + 1), a.eq(a + C)]
                issue(a + C, i + 1)

        if not synaptic:
            with m.State("DELAY_UPD"):
                m.d.comb += d_value.eq(e.acc)
                with m.If(learn_d):
                    e.delay.write(m, j, d_new)
                m.d.sync += [e.acc.eq(0), i.eq(0)]
                with m.If(j == C - 1):
                    e.el_b.read(m, 0)
                    e.sig.read(m, 0)
                    e.bias.read(m, 0)
                    m.next = "BIAS_UPD"
                with m.Else():
                    m.d.sync += [j.eq(j + 1), a.eq(j + 1)]
                    issue(j + 1, 0)
                    m.next = "SYN_UPD"

        with m.State("BIAS_UPD"):
            lane_a(e.sig.data, e.el_b.data, e.k_w, e.bias.data)
            with m.If(learn_w):
                e.bias.write(m, i, a_bias)
            with m.If(i == N - 1):
                m.next = "UPD_DONE"
            with m.Else():
                m.d.sync += i.eq(i + 1)
                for mem in (e.el_b, e.sig, e.bias):
                    mem.read(m, i + 1)

        with m.State("UPD_DONE"):
            m.d.sync += [e.in_update.eq(0), e.last_update_cycles.eq(e.update_cycles)]
            m.next = "IDLE"


def _select(index, values):
    """``values[index]`` as a multiplexer (0 past the end)."""
    out = Const(0)
    for n, value in reversed(list(enumerate(values))):
        out = Mux(index == n, value, out)
    return out
