"""Host-side contract of the inference core: enumerations, stream layouts, widths.

Everything the model compiler and the testbenches need to talk to
:class:`delrec.hw.core.InferenceCore` lives here, so that neither has to
elaborate the core to learn a field width.

Streams (all :mod:`amaranth.lib.stream`, payloads are :class:`~amaranth.lib.data.StructLayout`):

``inputs``
    ``channel`` (``ceil(log2 C)`` bits, at least 1), ``last`` (1 bit).
``spikes``
    ``neuron`` (``ceil(log2 N)`` bits, at least 1), ``last`` (1 bit).
``write``
    ``target`` (:class:`WriteTarget`), ``addr``, ``data``.
``read``
    ``target`` (:class:`ReadTarget`), ``addr``.
``read_data``
    ``data`` (raw bits of the element, zero-extended).
"""

from __future__ import annotations

from amaranth.hdl import signed, unsigned
from amaranth.lib import data, enum, wiring
from amaranth.lib.wiring import In, Out

from delrec.arith import CoreSpec
from delrec.build import CoreBuild

__all__ = ["WriteTarget", "ReadTarget", "ConfigRegister", "LearnFlag", "Counter", "CoreGeometry",
           "input_layout", "spike_layout", "write_layout", "read_layout", "read_data_layout",
           "delay_queue_signature", "DelayQueue", "COUNTER_BITS", "STEP_REGISTER_BITS", "SHIFT_BITS"]

#: Width of the performance counters (cycles, synaptic events, steps).
COUNTER_BITS = 32


class WriteTarget(enum.Enum, shape=4):
    """What a ``write`` beat stores.

    Element addresses (``C`` inputs, ``N`` neurons, ``K`` classes):

    ``W_IN``
        ``c * N + i``: input weight of channel ``c`` to neuron ``i`` (its
        forward value: the input and recurrent weights do not learn).
    ``W_REC``
        ``j * N + i``: recurrent weight from ``j`` (pre) to ``i`` (post).
    ``DELAY``
        ``j`` (axonal) or ``j * N + i`` (synaptic): recurrent delay (a
        learning core: in ``2^-delay_frac_bits`` steps).
    ``BIAS``
        ``i``: hidden bias (its forward value: it does not learn on chip).
    ``W_OUT``
        ``j * K + k``: readout weight from neuron ``j`` to class ``k``
        (its learning copy).
    ``BIAS_OUT``
        ``k``: readout bias (its learning copy).
    ``CONFIG``
        a :class:`ConfigRegister`.
    ``CLEAR``
        any address: zero the state (membranes, delay queue, input history,
        traces and learning signals, readout values, scores, step counter
        and performance counters), keep the parameters and registers.
    ``INPUT_DELAY``
        ``c``: the input delay of channel ``c`` (a core with input delays).
    ``LUT``
        ``x + R``: the Gaussian-derivative table (a learning core;
        :func:`delrec.arith.gaussian_derivative_lut`), ``R`` the ``REACH`` register.
    """

    W_IN = 0
    W_REC = 1
    DELAY = 2
    BIAS = 3
    W_OUT = 4
    BIAS_OUT = 5
    CONFIG = 6
    CLEAR = 7
    INPUT_DELAY = 8
    LUT = 9


class ConfigRegister(enum.IntEnum):
    """Addresses of the ``CONFIG`` registers (the learning ones only in a learning core)."""

    THETA = 0             #: firing threshold, ``v_bits``
    LEAK = 1              #: hidden leak parameter of :func:`delrec.arith.decay`
    READOUT_LEAK = 2      #: readout leak parameter
    RESET = 3             #: 0 hard reset, 1 soft (subtractive) reset
    SCORE_START = 4       #: first step whose readout values the scores sum
    LEARN = 5             #: :class:`LearnFlag` bits
    REACH = 6             #: ``R`` of the Gaussian-derivative table (at most the build's ``max_reach``)
    LOSS_START = 7        #: first step that learns (the traces run from step 0)
    LR_DELAY_SHIFT = 8    #: ``k_d``, the delays' learning-rate shift
    LR_READOUT_SHIFT = 9  #: ``k_out``, the readout's learning-rate shift
    LABEL = 10            #: the sample's class (``>= K``: no target)
    TARGET = 11           #: the per-step error's target value of the label's readout unit
    ERROR_SHIFT = 12      #: :func:`delrec.arith.error_shift` of the target


class LearnFlag(enum.IntFlag):
    """Bits of the ``LEARN`` register."""

    LEARN = 1              #: the step learns: traces, and from ``LOSS_START`` on signals and updates
    INPUT_DELAYS = 2       #: the input delays learn
    RECURRENT_DELAYS = 4   #: the recurrent delays learn
    READOUT_BIAS = 8       #: the readout biases learn (the readout weights learn with ``LEARN``)


class ReadTarget(enum.Enum, shape=4):
    """What a ``read`` request returns (addresses as for :class:`WriteTarget`)."""

    MEMBRANE = 0      #: ``i``: ``v`` after the last step
    READOUT = 1       #: ``k``: readout value ``V_k``
    SCORE = 2         #: ``k``: score
    COUNTER = 3       #: a :class:`Counter`
    DELAY = 4         #: the recurrent delay (stored)
    INPUT_DELAY = 5   #: ``c``: the input delay (stored)
    W_OUT = 6         #: ``j * K + k``: readout weight (stored)
    BIAS_OUT = 7      #: ``k``: readout bias (stored)
    TRACE = 8         #: ``p``: delay trace of channel ``p`` (inputs ``0..C-1``, then neurons)
    SIGNAL = 9        #: ``i``: learning signal ``L_i`` of the last step that learned


class Counter(enum.IntEnum):
    """Addresses of the ``COUNTER`` read target."""

    #: Cycles of the last step: from the clock edge that accepted its
    #: ``last=1`` input beat to the one that accepted its ``last=1`` spike beat.
    CYCLES = 0
    #: Weight accumulations since the last ``CLEAR``: ``N`` per input event,
    #: ``N`` per recurrent spike fanned out, ``K`` per spike into the readout.
    SYNAPTIC_EVENTS = 1
    #: Steps completed since the last ``CLEAR``.
    STEPS = 2


#: Width of the registers that count steps (``SCORE_START``, ``LOSS_START``).
STEP_REGISTER_BITS = 16

#: Width of the learning-rate and error shift registers (``0..63``).
SHIFT_BITS = 6


def _bits(count: int) -> int:
    """Bits of an unsigned index in ``0..count-1``, at least 1."""
    return max(1, (count - 1).bit_length())


class CoreGeometry:
    """Derived sizes of a core build's hardware (no hardware, plain arithmetic).

    Parameters
    ----------
    build : CoreBuild
        The configuration, validated by :class:`delrec.build.CoreBuild`.
    """

    def __init__(self, build: CoreBuild):
        if not isinstance(build, CoreBuild):
            raise TypeError(f"Build must be a delrec.build.CoreBuild, not {build!r}")
        self.build = build
        self.inputs = build.inputs
        self.neurons = build.neurons
        self.classes = build.classes
        self.spec = build.spec
        self.lanes = build.lanes
        self.delay_kind = build.delay_kind

    @property
    def rows(self) -> int:
        """``B = N / P``: neurons per lane (cycles of one row sweep)."""
        return self.neurons // self.lanes

    @property
    def lane_bits(self) -> int:
        """``log2 P``: low address bits that pick the lane."""
        return (self.lanes - 1).bit_length()

    @property
    def depth(self) -> int:
        return self.spec.depth

    @property
    def leak_bits(self) -> int:
        """Width of a leak parameter: ``0..2^decay_bits`` or ``0..v_bits``."""
        if self.spec.leak == "multiply":
            return self.spec.decay_bits + 1
        return max(self.spec.v_bits, self.spec.readout_bits).bit_length()

    @property
    def delay_depth(self) -> int:
        """Delay memory rows per lane."""
        return self.rows if self.delay_kind == "axonal" else self.neurons * self.rows

    @property
    def delay_store_bits(self) -> int:
        """Width of a stored delay: with its fraction in a learning core, else the integer delay."""
        return self.spec.stored_delay_bits if self.build.learns else self.spec.delay_bits

    @property
    def history_bits(self) -> int:
        """Width of a slot or an age of the spike and input histories (``log2 H``)."""
        return (self.build.history_depth - 1).bit_length()

    @property
    def label_bits(self) -> int:
        """Width of the ``LABEL`` register: ``0..K`` (``K``: no target)."""
        return _bits(self.classes + 1)

    @property
    def write_addr_bits(self) -> int:
        C, N, K = self.inputs, self.neurons, self.classes
        return _bits(max(C * N, N * N, N * K, len(ConfigRegister), self.build.lut_depth))

    @property
    def write_data_bits(self) -> int:
        spec = self.spec
        widths = [spec.weight_bits, spec.v_bits, spec.readout_bits, self.delay_store_bits,
                  self.leak_bits, STEP_REGISTER_BITS, spec.weight_store_bits, spec.readout_bias_store_bits]
        if self.build.learns:
            widths += [spec.lut_bits, SHIFT_BITS, self.label_bits,
                       len(LearnFlag)]
        return max(widths)

    @property
    def read_addr_bits(self) -> int:
        N, K = self.neurons, self.classes
        return _bits(max(N, K, len(Counter), N * K, self.delay_depth * self.lanes,
                         self.build.channels if self.build.learns else 1, self.inputs))

    @property
    def read_data_bits(self) -> int:
        spec = self.spec
        widths = [spec.v_bits, spec.readout_bits, spec.score_bits, COUNTER_BITS, spec.weight_store_bits,
                  spec.readout_bias_store_bits, self.delay_store_bits]
        if self.build.learns:
            widths += [spec.trace_bits, spec.signal_bits]
        return max(widths)

    @property
    def channel_bits(self) -> int:
        return _bits(self.inputs)

    @property
    def neuron_bits(self) -> int:
        return _bits(self.neurons)


def input_layout(geometry: CoreGeometry) -> data.StructLayout:
    """Payload of the ``inputs`` stream: one event, or the end of a step's input."""
    return data.StructLayout({"channel": unsigned(geometry.channel_bits), "last": unsigned(1)})


def spike_layout(geometry: CoreGeometry) -> data.StructLayout:
    """Payload of the ``spikes`` stream: one spike, or the end of a step."""
    return data.StructLayout({"neuron": unsigned(geometry.neuron_bits), "last": unsigned(1)})


def write_layout(geometry: CoreGeometry) -> data.StructLayout:
    """Payload of the ``write`` stream: one element of one parameter memory."""
    return data.StructLayout({
        "target": WriteTarget,
        "addr": unsigned(geometry.write_addr_bits),
        "data": unsigned(geometry.write_data_bits),
    })


def read_layout(geometry: CoreGeometry) -> data.StructLayout:
    """Payload of the ``read`` request stream."""
    return data.StructLayout({"target": ReadTarget, "addr": unsigned(geometry.read_addr_bits)})


def read_data_layout(geometry: CoreGeometry) -> data.StructLayout:
    """Payload of the ``read_data`` response stream."""
    return data.StructLayout({"data": unsigned(geometry.read_data_bits)})


#: Cycles from a delay queue's ``record_en`` to the cycle its ``record_spikes`` are taken.
RECORD_LATENCY = 2

#: Cycles from a delay queue's ``probe_en`` to its ``probe_spikes``, per queue kind. The
#: ring registers the row read from memory before any logic looks at it (a block RAM's
#: output is slow, on the ECP5 most of a 100 MHz cycle); the spike history registers the
#: slot of the probed age (given the cycle after the probe) before it reads that slot, and
#: the bit read before the scanner's control sees it.
PROBE_LATENCY = {"ring": 2, "history": 4}


def delay_queue_signature(rows: int, lanes: int, spec: CoreSpec, depth: int | None = None) -> wiring.Signature:
    """The interface every delay queue offers the core (queue side: ``In`` is driven by the core).

    ``depth`` is the number of steps the queue keeps (``D`` by default; the
    spike history of a learning core keeps more, see
    :attr:`delrec.build.CoreBuild.history_depth`): ``slot`` and
    ``probe_age`` count modulo ``depth``.

    All ``lanes`` lanes act in lockstep on the same row ``b`` (neurons
    ``b*P + l``). Reads are synchronous: results appear the cycle after the
    request.

    ``slot``
        ``t mod D``, the current step.
    ``deliver_*``
        add ``deliver_weight[l]`` to the input of neuron ``row*P + l`` that is
        due ``deliver_offset[l]`` steps from now (0: this step; the ring
        honours the offset, the spike history only ever delivers to the current
        step); one row per cycle, pipelined.
    ``take_*``
        ``take_current[l]`` (next cycle) is the step's total input of neuron
        ``row*P + l``; the queue zeroes it behind the read.
    ``record_*``
        the step's spikes of row ``record_row``: ``record_en`` with the row,
        ``record_spikes`` :data:`RECORD_LATENCY` cycles later.
    ``probe_*``
        ``probe_spikes[l]``, :data:`PROBE_LATENCY` cycles after ``probe_en``
        (a probe may be issued every cycle; nothing is held), tells whether
        neuron ``row*P + l`` spiked ``probe_age[l]`` steps ago, ``probe_age``
        given on the cycle after the probe (the cycle the row's delays come
        out of their memory); the ring keeps only the current step (age 0).
    ``clear``, ``busy``
        zero the whole queue; ``busy`` until done.
    """
    row_shape = unsigned(max(1, (rows - 1).bit_length()))
    delay_shape = unsigned(spec.delay_bits)
    slot_shape = unsigned(((depth or spec.depth) - 1).bit_length())
    return wiring.Signature({
        "slot": In(slot_shape),
        "deliver_en": In(1),
        "deliver_row": In(row_shape),
        "deliver_offset": In(data.ArrayLayout(delay_shape, lanes)),
        "deliver_weight": In(data.ArrayLayout(signed(spec.weight_bits), lanes)),
        "take_en": In(1),
        "take_row": In(row_shape),
        "take_current": Out(data.ArrayLayout(signed(spec.acc_bits), lanes)),
        "record_en": In(1),
        "record_row": In(row_shape),
        "record_spikes": In(unsigned(lanes)),
        "probe_en": In(1),
        "probe_row": In(row_shape),
        "probe_age": In(data.ArrayLayout(slot_shape, lanes)),
        "probe_spikes": Out(unsigned(lanes)),
        "clear": In(1),
        "busy": Out(1),
    })


class DelayQueue(wiring.Component):
    """Base of the delay queues: checks the geometry and offers :func:`delay_queue_signature`.

    Subclasses (:class:`~delrec.hw.ring.FutureInputRing`,
    :class:`~delrec.hw.history.SpikeHistory`) find ``_rows`` (``B = N / P``),
    ``_lanes``, ``_spec`` and ``_depth`` set.

    Parameters
    ----------
    neurons : int
        ``N``.
    lanes : int
        ``P``, divides ``N``.
    spec : CoreSpec
    depth : int, optional
        Steps kept, a power of two (``D`` by default).
    """

    def __init__(self, neurons: int, lanes: int, spec: CoreSpec, depth: int | None = None):
        if neurons % lanes:
            raise ValueError(f"Lane count must divide the neuron count, not {lanes!r}")
        depth = spec.depth if depth is None else depth
        if isinstance(depth, bool) or not isinstance(depth, int) or depth < spec.depth or depth & (depth - 1):
            raise ValueError(f"Queue depth must be a power of two of at least D = {spec.depth}, "
                             f"not {depth!r}")
        self._rows = neurons // lanes
        self._lanes = lanes
        self._spec = spec
        self._depth = depth
        super().__init__(delay_queue_signature(self._rows, lanes, spec, depth))
