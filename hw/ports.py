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

__all__ = ["WriteTarget", "ReadTarget", "ConfigRegister", "Counter", "CoreGeometry",
           "input_layout", "spike_layout", "write_layout", "read_layout", "read_data_layout",
           "delay_queue_signature", "DelayQueue", "COUNTER_BITS"]

#: Width of the performance counters (cycles, synaptic events, steps).
COUNTER_BITS = 32


class WriteTarget(enum.Enum, shape=3):
    """What a ``write`` beat stores.

    Element addresses (``C`` inputs, ``N`` neurons, ``K`` classes):

    ``W_IN``
        ``c * N + i``: input weight of channel ``c`` to neuron ``i``.
    ``W_REC``
        ``j * N + i``: recurrent weight from ``j`` (pre) to ``i`` (post).
    ``DELAY``
        ``j`` (axonal) or ``j * N + i`` (synaptic): recurrent delay.
    ``BIAS``
        ``i``: hidden bias.
    ``W_OUT``
        ``j * K + k``: readout weight from neuron ``j`` to class ``k``.
    ``BIAS_OUT``
        ``k``: readout bias.
    ``CONFIG``
        a :class:`ConfigRegister`.
    ``CLEAR``
        any address: zero the state (membranes, delay queue, readout
        values, scores, step counter and performance counters), keep the
        parameters.
    """

    W_IN = 0
    W_REC = 1
    DELAY = 2
    BIAS = 3
    W_OUT = 4
    BIAS_OUT = 5
    CONFIG = 6
    CLEAR = 7


class ConfigRegister(enum.IntEnum):
    """Addresses of the ``CONFIG`` registers."""

    THETA = 0         #: firing threshold, ``v_bits``
    LEAK = 1          #: hidden leak parameter of :func:`delrec.arith.decay`
    READOUT_LEAK = 2  #: readout leak parameter
    RESET = 3         #: 0 hard reset, 1 soft (subtractive) reset


class ReadTarget(enum.Enum, shape=2):
    """What a ``read`` request returns (``addr`` is ``i``, ``k`` or a :class:`Counter`)."""

    MEMBRANE = 0
    READOUT = 1
    SCORE = 2
    COUNTER = 3


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
    def write_addr_bits(self) -> int:
        C, N, K = self.inputs, self.neurons, self.classes
        return _bits(max(C * N, N * N, N * K, len(ConfigRegister)))

    @property
    def write_data_bits(self) -> int:
        spec = self.spec
        return max(spec.weight_bits, spec.v_bits, spec.readout_bits, spec.delay_bits,
                   self.leak_bits)

    @property
    def read_addr_bits(self) -> int:
        return _bits(max(self.neurons, self.classes, len(Counter)))

    @property
    def read_data_bits(self) -> int:
        spec = self.spec
        return max(spec.v_bits, spec.readout_bits, spec.score_bits, COUNTER_BITS)

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

#: Cycles from a delay queue's ``probe_en`` to its ``probe_spikes``: the row read
#: from memory is registered before any logic looks at it (a block RAM's output is
#: slow, on the ECP5 most of a 100 MHz cycle).
PROBE_LATENCY = 2


def delay_queue_signature(rows: int, lanes: int, spec: CoreSpec) -> wiring.Signature:
    """The interface every delay queue offers the core (queue side: ``In`` is driven by the core).

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
        ``record_spikes`` :data:`RECORD_LATENCY` cycles later (the history
        reads the row and registers it before writing it back).
    ``probe_*``
        ``probe_spikes[l]``, :data:`PROBE_LATENCY` cycles after ``probe_en``
        (a probe may be issued every cycle; nothing is held: the queue may read
        ``probe_row`` on any cycle without ``record_en``, and the result is
        that of the row on ``probe_row`` ``PROBE_LATENCY`` cycles before),
        tells whether neuron ``row*P + l`` spiked ``probe_age[l]`` steps ago,
        ``probe_age`` given on the cycle after the probe (the cycle the row's
        delays come out of their memory)
        (applied combinationally to the held row); the ring keeps only the
        current step (age 0).
    ``clear``, ``busy``
        zero the whole queue; ``busy`` until done.
    """
    row_shape = unsigned(max(1, (rows - 1).bit_length()))
    delay_shape = unsigned(spec.delay_bits)
    return wiring.Signature({
        "slot": In(delay_shape),
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
        "probe_age": In(data.ArrayLayout(delay_shape, lanes)),
        "probe_spikes": Out(unsigned(lanes)),
        "clear": In(1),
        "busy": Out(1),
    })


class DelayQueue(wiring.Component):
    """Base of the delay queues: checks the geometry and offers :func:`delay_queue_signature`.

    Subclasses (:class:`~delrec.hw.ring.FutureInputRing`,
    :class:`~delrec.hw.history.SpikeHistory`) find ``_rows`` (``B = N / P``),
    ``_lanes`` and ``_spec`` set.

    Parameters
    ----------
    neurons : int
        ``N``.
    lanes : int
        ``P``, divides ``N``.
    spec : CoreSpec
    """

    def __init__(self, neurons: int, lanes: int, spec: CoreSpec):
        if neurons % lanes:
            raise ValueError(f"Lane count must divide the neuron count, not {lanes!r}")
        self._rows = neurons // lanes
        self._lanes = lanes
        self._spec = spec
        super().__init__(delay_queue_signature(self._rows, lanes, spec))
