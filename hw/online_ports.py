"""Host-side contract of the online-learning core: enumerations, widths, stream layouts.

Everything the firmware and the testbenches need to talk to
:class:`delrec.hw.online_core.OnlineCore` lives here, so that neither has to
elaborate the core to learn a field width. The widths follow
:class:`delrec.arith.CoreSpec` (the spec the golden rule
:mod:`delrec.golden.online_fixed` is written from) and the bounds of
:class:`OnlineGeometry` that make every accumulator exact.

Streams (all :mod:`amaranth.lib.stream`, payloads are :class:`~amaranth.lib.data.StructLayout`):

``inputs``
    ``channel``, ``last``: one input event, or (``last=1``) the end of a
    step's input, which starts the step.
``spikes``
    ``neuron``, ``last``: the step's spikes in increasing order, then
    ``last=1`` once the readout is updated.
``signal``
    ``kind`` (:class:`SignalKind`), ``index``, ``value`` (``signal_bits``
    signed), ``last``: the third factor of one sample, then (``last=1``) the
    commit that applies the update. Only a core with a per-sample signal
    has it; one with a per-step signal forms the third factor itself from
    the ``LABEL`` register.
``write``, ``read``, ``read_data``
    ``target`` (:class:`OnlineWriteTarget` / :class:`OnlineReadTarget`),
    ``addr``, ``data``.
"""

from __future__ import annotations

import math

from amaranth.lib import data, enum

from delrec.arith import DELAY_KINDS, CoreSpec, error_shift

__all__ = ["OnlineWriteTarget", "OnlineReadTarget", "OnlineConfigRegister", "OnlineCounter",
           "OnlineFlag", "SignalKind", "OnlineGeometry", "OnlineArithmetic", "SIGNAL_MODES"]

#: When the third factor arrives: once per sample from the host, or every step from the chip.
SIGNAL_MODES = ("sample", "step")

#: Width of the counters and of the configuration registers' data.
COUNTER_BITS = 32


class OnlineWriteTarget(enum.Enum, shape=4):
    """What a ``write`` beat stores (``C`` inputs, ``N`` neurons, ``K`` classes).

    ``W_IN``
        ``i * C + c``: learning copy of the input weight of channel ``c`` to
        neuron ``i`` (``weight_bits + weight_frac_bits`` signed; the forward
        pass uses its top ``weight_bits``, which is all a per-step core keeps:
        its input and recurrent weights do not learn).
    ``DELAY``
        ``i * C + c`` (synaptic) or ``c`` (axonal; a recurrent layer's
        delays of neuron ``j``'s spikes at ``C + j``): delay in units of
        ``2^-delay_frac_bits`` steps, ``0..(D-1) 2^f``.
    ``BIAS``
        ``i``, ``v_bits + weight_frac_bits`` signed.
    ``W_OUT``
        ``k * N + i``: readout weight (learning copy, like ``W_IN``).
    ``B_OUT``
        ``k``: readout bias.
    ``LUT``
        ``x + R``: the Gaussian-derivative table
        (:func:`delrec.arith.gaussian_derivative_lut`) for ``x = -R..R``,
        ``R`` the ``REACH`` register.
    ``CONFIG``
        an :class:`OnlineConfigRegister`.
    ``CLEAR``
        any address: zero the sample's state (membranes, input history,
        traces, eligibility sums, spike counts, outputs, scores, errors and
        signals, the step count), keep parameters and configuration.
    ``W_REC``
        ``i * N + j``: recurrent weight from neuron ``j`` to neuron ``i``
        (learning copy, like ``W_IN``; a recurrent layer only).
    """

    W_IN = 0
    DELAY = 1
    BIAS = 2
    W_OUT = 3
    B_OUT = 4
    LUT = 5
    CONFIG = 6
    CLEAR = 7
    W_REC = 8


class OnlineReadTarget(enum.Enum, shape=5):
    """What a ``read`` beat returns (addresses as for :class:`OnlineWriteTarget`)."""

    W_IN = 0
    DELAY = 1
    BIAS = 2
    W_OUT = 3
    B_OUT = 4
    MEMBRANE = 5     #: ``i``: ``v`` after the last step
    TRACE_W = 6      #: weight trace, per synapse (synaptic) or per channel (axonal)
    TRACE_D = 7      #: delay trace, same addressing
    TRACE_B = 8      #: ``i``: bias trace
    ELIG_W = 9       #: ``i * C + c``: eligibility sum of the weight
    ELIG_D = 10      #: ``i * C + c``: eligibility sum of the delay
    ELIG_B = 11      #: ``i``: eligibility sum of the bias
    SPIKE_COUNT = 12  #: ``i``: spikes since ``loss_start``
    OUTPUT = 13      #: ``k``: readout potential ``u_k`` of the last step
    SCORE = 14       #: ``k``: ``sum_t u_k[t]`` from ``loss_start`` on
    SIGNAL = 15      #: ``i``: learning signal ``L_i`` of the last update (per step: last counted step)
    COUNTER = 16     #: an :class:`OnlineCounter`
    CONFIG = 17      #: an :class:`OnlineConfigRegister`
    W_REC = 18       #: ``i * N + j``: recurrent weight (a recurrent layer only)


class OnlineConfigRegister(enum.IntEnum):
    """Addresses of the ``CONFIG`` registers."""

    FLAGS = 0             #: :class:`OnlineFlag` bits
    REACH = 1             #: ``R``: the LUT covers ``x = -R..R`` (``2^-f`` steps); at most ``max_reach``
    LOSS_START = 2        #: first step that counts in scores and eligibility sums
    LR_WEIGHT_SHIFT = 3   #: ``k`` of the weight and bias updates
    LR_DELAY_SHIFT = 4    #: ``k`` of the delay updates
    LR_READOUT_SHIFT = 5  #: ``k`` of the readout updates
    LABEL = 6             #: the sample's class (per-step signal: the error's target; >= K: none)


class OnlineFlag(enum.IntFlag):
    """Bits of the ``FLAGS`` register."""

    LEARN = 1          #: keep traces and eligibility sums during steps (off: inference only)
    LEARN_WEIGHTS = 2  #: input weights and biases learn
    LEARN_DELAYS = 4   #: delays learn
    READOUT_BIAS = 8   #: the readout bias learns


class OnlineCounter(enum.IntEnum):
    """Addresses of the ``COUNTER`` read target."""

    STEP_CYCLES = 0     #: cycles of the last step (its ``last=1`` input beat to its last spike beat)
    UPDATE_CYCLES = 1   #: cycles of the last update (commit beat to ready again)
    STEPS = 2           #: steps since ``CLEAR``
    DROPPED_EVENTS = 3  #: input events dropped: channel ``>= C`` or a count that would overflow
    BAD_SIGNALS = 4     #: signal beats dropped: an index ``>= K`` (errors) or ``>= N`` (signals)
    OVERRUNS = 5        #: steps refused because learning was on and ``max_steps`` were reached


class SignalKind(enum.Enum, shape=1):
    """What a ``signal`` beat carries.

    ``ERROR``
        ``index = k``: the readout error ``err_k`` (the host's
        ``round((softmax - onehot) * top)``); a commit of this kind
        broadcasts ``L = sat(round(W_out^T err >> (weight_bits - 1)))`` on
        chip and also updates the readout.
    ``NEURON``
        ``index = i``: the learning signal ``L_i`` itself (any feedback the
        host computes); a commit of this kind leaves the readout alone.
    """

    ERROR = 0
    NEURON = 1


def _bits(count: int) -> int:
    """Bits to index ``count`` things (at least 1)."""
    return max(1, math.ceil(math.log2(count))) if count > 1 else 1


class OnlineArithmetic:
    """A :class:`~delrec.arith.CoreSpec` with the two network constants this core bakes in.

    The learning core compares with a fixed threshold and leaks by a fixed
    shift; everything else is the spec's. Attribute names are the core's.
    """

    def __init__(self, spec: CoreSpec, theta: int, leak_shift: int):
        if not isinstance(spec, CoreSpec):
            raise TypeError(f"Spec must be a delrec.arith.CoreSpec, not {spec!r}")
        if spec.leak != "shift":
            raise ValueError(f"The online core leaks by a shift, not a {spec.leak!r}")
        self.spec, self.theta, self.leak_shift = spec, int(theta), int(leak_shift)
        self.stochastic = False

    def __getattr__(self, name):
        return getattr(self.spec, name)

    @property
    def delay_int_bits(self) -> int:
        return self.spec.delay_bits

    @property
    def step_error_shift(self) -> int:
        return error_shift(self.theta, self.spec.signal_bits)

    def to_dict(self) -> dict:
        return dict(self.spec.to_dict(), theta=self.theta, leak_shift=self.leak_shift)


class OnlineGeometry:
    """Sizes and widths of one online-learning core (see :class:`~delrec.hw.online_core.OnlineCore`).

    Parameters
    ----------
    inputs, neurons, classes : int
    spec : OnlineArithmetic
    delay_kind : {"synaptic", "axonal"}
    max_reach : int
        Largest LUT half-width ``R`` in ``2^-f`` steps (the table has
        ``2 R + 1`` entries).
    max_steps : int
        Longest sample while learning; sizes the eligibility sums, spike
        counts and scores so that they are exact.
    count_bits : int
        Width of one channel's event count in one step.
    signal : {"sample", "step"}
        The learning signal's mode: per sample from the host (the ``signal``
        stream, eligibility sums per synapse) or per step on chip from the
        ``LABEL`` register, every step's update applied at once (axonal
        delays and the readout learn; one delay trace per channel, no sums).
    recurrent : bool
        A recurrent layer (per-step signal only): neuron ``j``'s spikes are
        delayed channel ``C + j`` of the history, read at ``1 + round(d)``
        steps through its own learnable axonal delay, weighted by ``W_REC``.
    """

    def __init__(self, inputs: int, neurons: int, classes: int, spec: OnlineArithmetic,
                 delay_kind: str, max_reach: int, max_steps: int, count_bits: int,
                 signal: str = "sample", recurrent: bool = False):
        for name, value in (("Input count", inputs), ("Neuron count", neurons),
                            ("Class count", classes), ("Maximum steps", max_steps),
                            ("Count width", count_bits)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, not {value!r}")
        if not isinstance(spec, OnlineArithmetic):
            raise TypeError(f"Spec must be an OnlineArithmetic, not {spec!r}")
        if delay_kind not in DELAY_KINDS:
            raise ValueError(f"Delay kind must be one of {DELAY_KINDS}, not {delay_kind!r}")
        if isinstance(max_reach, bool) or not isinstance(max_reach, int) or max_reach < 0:
            raise ValueError(f"Maximum reach must be a non-negative integer, not {max_reach!r}")
        if signal not in SIGNAL_MODES:
            raise ValueError(f"Signal mode must be one of {SIGNAL_MODES}, not {signal!r}")
        if signal == "step" and delay_kind != "axonal":
            raise ValueError("A per-step learning signal is built for axonal delays (one delay "
                             f"trace per input channel), not {delay_kind!r} ones")
        if recurrent and signal != "step":
            raise ValueError("A recurrent layer is built with a per-step learning signal (and axonal "
                             f"delays), not a per-{signal} one")
        self.inputs, self.neurons, self.classes = inputs, neurons, classes
        self.spec, self.delay_kind, self.signal = spec, delay_kind, signal
        self.recurrent = bool(recurrent)
        self.max_reach, self.max_steps, self.count_bits = max_reach, max_steps, count_bits

    # -- sizes -------------------------------------------------------------------------
    @property
    def synapses(self) -> int:
        return self.inputs * self.neurons

    @property
    def channels(self) -> int:
        """Channels of the input history: ``C``, plus ``N`` for a recurrent layer's spikes."""
        return self.inputs + (self.neurons if self.recurrent else 0)

    @property
    def delay_count(self) -> int:
        """Delays (and traces): one per synapse or one per channel."""
        return self.synapses if self.delay_kind == "synaptic" else self.channels

    @property
    def history_rows(self) -> int:
        """``H``: rows of the input history (one count per channel), one more than the longest lag read.

        The longest lag is a tap of the widest LUT around the largest delay
        word, ``(2^(delay_int + f) - 1 + R) >> f``, at most
        ``D - 1 + ceil(R / 2^f) + 1``; rows are used as a ring
        (``(row - lag) mod H``), so ``H`` need not be a power of two.
        """
        s = self.spec
        longest = s.depth - 1 + -(-self.max_reach >> s.delay_frac_bits) + 1
        return longest + 1 + int(self.recurrent)   # recurrent spikes arrive a step later

    @property
    def lut_depth(self) -> int:
        return 2 * self.max_reach + 1

    # -- widths ------------------------------------------------------------------------
    @property
    def weight_width(self) -> int:
        return self.spec.weight_bits + self.spec.weight_frac_bits

    @property
    def bias_width(self) -> int:
        return self.spec.v_bits + self.spec.weight_frac_bits

    @property
    def delay_width(self) -> int:
        return self.spec.delay_int_bits + self.spec.delay_frac_bits

    @property
    def psi_width(self) -> int:
        """``psi`` is ``0..2^psi_bits`` (unsigned)."""
        return self.spec.psi_bits + 1

    @property
    def step_bits(self) -> int:
        """Width of a step count ``0..max_steps``."""
        return _bits(self.max_steps + 1)

    @property
    def eligibility_width(self) -> int:
        """Signed width of ``sum_t psi eps`` over ``max_steps`` steps (exact)."""
        return self.spec.psi_bits + self.spec.trace_bits + self.step_bits + 1

    @property
    def current_width(self) -> int:
        """Signed width of the exact input current ``bias + sum_c w x``."""
        s = self.spec
        return max(s.v_bits, s.weight_bits + self.count_bits + _bits(self.channels) + 1) + 2

    @property
    def output_width(self) -> int:
        """Signed width of a readout potential ``b + sum_i w s`` (exact)."""
        s = self.spec
        return max(s.v_bits, s.weight_bits + _bits(self.neurons) + 1) + 2

    @property
    def score_width(self) -> int:
        return self.output_width + self.step_bits + 1

    @property
    def derivative_width(self) -> int:
        """Signed width of ``D = sum_m lut x`` over one LUT span (exact)."""
        taps = 2 * (self.max_reach >> self.spec.delay_frac_bits) + 3
        return self.spec.lut_bits + self.count_bits + _bits(taps) + 1

    @property
    def back_signal_width(self) -> int:
        """Signed width of ``L_i psi_i`` (per-step signal)."""
        return self.spec.signal_bits + self.psi_width

    @property
    def back_projection_width(self) -> int:
        """Signed width of ``S_c = sum_i L_i psi_i w_ic`` (exact over ``N`` neurons)."""
        return self.back_signal_width + self.spec.weight_bits + _bits(self.neurons) + 1

    @property
    def shift_bits(self) -> int:
        """Width of the learning-rate shift registers (``0..63``)."""
        return 6

    # -- stream fields -----------------------------------------------------------------
    @property
    def channel_bits(self) -> int:
        return _bits(self.inputs)

    @property
    def neuron_bits(self) -> int:
        return _bits(self.neurons)

    @property
    def addr_bits(self) -> int:
        return _bits(max(self.synapses, self.lut_depth, len(OnlineCounter), self.classes * self.neurons,
                         self.neurons * self.neurons if self.recurrent else 1, self.delay_count))

    @property
    def write_data_bits(self) -> int:
        return max(self.weight_width, self.bias_width, self.delay_width, self.spec.lut_bits,
                   self.shift_bits, _bits(self.lut_depth), self.step_bits, len(OnlineFlag))

    @property
    def read_data_bits(self) -> int:
        return max(self.write_data_bits, self.eligibility_width, self.score_width, COUNTER_BITS,
                   self.spec.trace_bits, self.spec.v_bits, self.output_width)

    @property
    def signal_index_bits(self) -> int:
        return _bits(max(self.neurons, self.classes))

    def input_layout(self) -> data.StructLayout:
        return data.StructLayout({"channel": self.channel_bits, "last": 1})

    def spike_layout(self) -> data.StructLayout:
        return data.StructLayout({"neuron": self.neuron_bits, "last": 1})

    def signal_layout(self) -> data.StructLayout:
        return data.StructLayout({"kind": SignalKind, "index": self.signal_index_bits,
                                  "value": self.spec.signal_bits, "last": 1})

    def write_layout(self) -> data.StructLayout:
        return data.StructLayout({"target": OnlineWriteTarget, "addr": self.addr_bits,
                                  "data": self.write_data_bits})

    def read_layout(self) -> data.StructLayout:
        return data.StructLayout({"target": OnlineReadTarget, "addr": self.addr_bits})

    def read_data_layout(self) -> data.StructLayout:
        return data.StructLayout({"data": self.read_data_bits})

    def to_dict(self) -> dict:
        return {"inputs": self.inputs, "neurons": self.neurons, "classes": self.classes,
                "spec": self.spec.to_dict(), "delay_kind": self.delay_kind,
                "max_reach": self.max_reach, "max_steps": self.max_steps,
                "count_bits": self.count_bits, "signal": self.signal, "recurrent": self.recurrent}


def step_cycles(geometry: OnlineGeometry, *, spikes: int, taps: int = 0, eligibility_passes: int = 0,
                learn: bool = False, step_update: bool = False, delays_learn: bool = True) -> int:
    """Cycles of one step of :class:`~delrec.hw.online_core.OnlineCore` (its ``STEP_CYCLES``).

    With a spike consumer that never stalls. ``spikes``: neurons that fire
    this step; with ``learn`` (the ``LEARN`` flag), ``taps``: the sum over
    synapses (synaptic) or channels (axonal) of the LUT taps read, the
    integers ``m`` in ``[0, t]`` with ``|m 2^f - d| <= R`` (0 when delays do
    not learn); ``eligibility_passes``: neurons with ``psi > 0`` in a step
    that counts (``t >= loss_start``) while weights or delays learn.

    Inference: ``2K + 1 + C + N (5 + 2C)`` (synaptic; axonal
    ``2K + 1 + 3C + N (5 + C)``) ``+ (K + 1)`` per spike. Learning adds
    one trace write per synapse (channel) plus its taps, and ``C`` per
    eligibility pass. ``step_update``: a per-step core's update in this step
    (learning, ``t >= loss_start``): ``N K + K s + K`` for the broadcast and
    the readout (``s`` spikes) and, when ``delays_learn``, ``C (N + 2)``.
    In a recurrent layer ``C`` is ``C + N`` (its spikes are channels).
    """
    g = geometry
    C, N, K = g.channels, g.neurons, g.classes
    per_item = 2 * C if g.delay_kind == "synaptic" else C
    cycles = 2 * K + 1 + C + N * (5 + per_item) + spikes * (K + 1)
    if g.delay_kind == "axonal":
        cycles += 2 * C
    if learn:
        cycles += g.delay_count + taps + C * eligibility_passes
    if step_update:
        cycles += N * K + K * spikes + K + (C * (N + 2) if delays_learn else 0)
    return cycles


def update_cycles(geometry: OnlineGeometry, *, errors: bool, learn_synapses: bool) -> int:
    """Cycles of one update (commit beat to ready again; the ``UPDATE_CYCLES`` counter).

    ``errors``: a commit of readout errors (broadcast ``N K``, readout
    ``K N + K``); ``learn_synapses``: weights or delays learn (``N C``, plus
    ``C`` axonal, plus ``N`` biases).
    """
    g = geometry
    C, N, K = g.inputs, g.neurons, g.classes
    cycles = 2
    if errors:
        cycles += 2 * N * K + K
    if learn_synapses:
        cycles += N * C + N + (C if g.delay_kind == "axonal" else 0)
    return cycles
