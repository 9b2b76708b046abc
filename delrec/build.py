"""One hardware configuration of the core: what every part of the tool chain is derived from.

A :class:`CoreBuild` names the sizes, the arithmetic, the delay queues and the
learning unit of one core build, and checks them once, here. The gateware
(:class:`delrec.hw.core.InferenceCore`, the host link, the synthesis tops), the
model compiler (:mod:`delrec.firmware.compiler`), the co-simulation, the sweep
and the command line's options all take one and derive their own sizes and
choices from it; the choices themselves (:data:`QUEUE_KINDS`,
:data:`LEARNING_MODES`, :data:`~delrec.arith.DELAY_KINDS`) are defined here
and in :mod:`delrec.arith`, nowhere else. Plain Python: no torch, no Amaranth.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from .arith import DELAY_KINDS, CoreSpec, known_fields

__all__ = ["CoreBuild", "QUEUE_KINDS", "LEARNING_MODES", "INPUT_DELAY_KINDS"]

#: The delay queues: future-input ring (``D x N`` accumulators) or spike history (``N x D`` bits).
QUEUE_KINDS = ("ring", "history")

#: The learning unit: none (inference only) or the three-factor rule with a per-step signal.
LEARNING_MODES = ("none", "step")

#: Input delays: none (events arrive in their step) or one per input channel.
INPUT_DELAY_KINDS = (None, "axonal")


def _positive(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, not {value!r}")
    return value


@dataclass(frozen=True)
class CoreBuild:
    """One hardware configuration of the core, validated once.

    Parameters
    ----------
    inputs, neurons, classes : int
        ``C``, ``N``, ``K``.
    spec : CoreSpec
        Widths, leak mode and (for a learning build) learning fractions.
    lanes : int
        ``P`` parallel lanes, a power of two that divides ``N``.
    delay_kind : {"axonal", "synaptic"}
        The recurrent delays: one per presynaptic neuron or one per connection.
    queue : {"ring", "history"}
        Future-input ring (``D x N`` accumulators) or spike history
        (``N x H`` bits, axonal delays only).
    input_delays : {None, "axonal"}
        One delay per input channel, read from an input history of ``H``
        steps (spike-history queue).
    learning : {"none", "step"}
        The learning unit: the three-factor rule with a per-step learning
        signal formed on chip (axonal delays, spike-history queue).
    max_reach : int
        A learning build: the largest half-width ``R`` of the
        Gaussian-derivative table (in ``2^-delay_frac_bits`` steps) the host
        may load; the table has ``2 max_reach + 1`` entries.
    shared_memory : bool
        The input weights, the readout weights and the input history share
        one single-port memory of 16-bit words (what the iCE40 UP5K's four
        SPRAMs need to hold the SHD-size learning core beside the recurrent
        weights); one lane, 8-bit weights, readout learning copies of at most
        16 bits and counts of at most 4 bits. The same results and the same
        cycles but for the input history's slower reads (see the core).
    """

    inputs: int
    neurons: int
    classes: int
    spec: CoreSpec = CoreSpec()
    lanes: int = 1
    delay_kind: str = "axonal"
    queue: str = "ring"
    input_delays: str | None = None
    learning: str = "none"
    max_reach: int = 0
    shared_memory: bool = False

    def __post_init__(self):
        _positive("Input count", self.inputs)
        _positive("Neuron count", self.neurons)
        _positive("Class count", self.classes)
        if not isinstance(self.spec, CoreSpec):
            raise TypeError(f"Spec must be a delrec.arith.CoreSpec, not {self.spec!r}")
        lanes = self.lanes
        if isinstance(lanes, bool) or not isinstance(lanes, int) or lanes < 1 or lanes & (lanes - 1):
            raise ValueError(f"Lane count must be a power of two, not {lanes!r}")
        if self.neurons % lanes:
            raise ValueError(f"Lane count must divide the neuron count {self.neurons}, not {lanes!r}")
        if self.delay_kind not in DELAY_KINDS:
            raise ValueError(f"Delay kind must be one of {DELAY_KINDS}, not {self.delay_kind!r}")
        if self.queue not in QUEUE_KINDS:
            raise ValueError(f"Delay queue must be one of {QUEUE_KINDS}, not {self.queue!r}")
        if self.queue == "history" and self.delay_kind != "axonal":
            raise ValueError("The spike-history queue holds one delay per presynaptic neuron: "
                             f"it needs delay_kind='axonal', not {self.delay_kind!r}")
        if self.input_delays not in INPUT_DELAY_KINDS:
            raise ValueError(f"Input delays must be one of {INPUT_DELAY_KINDS}, not {self.input_delays!r}")
        if self.input_delays is not None and self.queue != "history":
            raise ValueError("Input delays are read from the input history at their arrival: "
                             f"they need queue='history', not {self.queue!r}")
        if self.learning not in LEARNING_MODES:
            raise ValueError(f"Learning mode must be one of {LEARNING_MODES}, not {self.learning!r}")
        reach = self.max_reach
        if isinstance(reach, bool) or not isinstance(reach, int) or reach < 0:
            raise ValueError(f"Maximum reach must be a non-negative integer, not {reach!r}")
        if self.learning != "none":
            if self.queue != "history":
                raise ValueError("A learning build reads every delay when its spike arrives, so that a "
                                 f"delay may change on the way: it needs queue='history', not {self.queue!r}")
            if reach < 1:
                raise ValueError(f"A learning build needs a Gaussian-derivative table: max_reach must be "
                                 f"at least 1, not {reach!r}")
        if not isinstance(self.shared_memory, bool):
            raise ValueError(f"shared_memory must be true or false, not {self.shared_memory!r}")
        if self.shared_memory:
            spec = self.spec
            problems = [(lanes != 1, f"{lanes} lanes (one lane)"),
                        (spec.weight_bits != 8, f"{spec.weight_bits}-bit weights (two to a word: 8 bits)"),
                        (spec.weight_store_bits > 16, f"readout weights of {spec.weight_store_bits} bits "
                                                      f"(at most 16)"),
                        (spec.count_bits > 4, f"counts of {spec.count_bits} bits (at most 4)")]
            for bad, text in problems:
                if bad:
                    raise ValueError(f"A shared memory of 16-bit words cannot hold this build: {text}")

    # -- derived sizes -----------------------------------------------------------------
    @property
    def learns(self) -> bool:
        return self.learning != "none"

    @property
    def rows(self) -> int:
        """``B = N / P``: neurons per lane (cycles of one row sweep)."""
        return self.neurons // self.lanes

    @property
    def reach_steps(self) -> int:
        """Whole steps the widest table reaches beyond a delay: ``ceil(max_reach / 2^f)``."""
        return -(-self.max_reach >> self.spec.delay_frac_bits)

    @property
    def history_depth(self) -> int:
        """``H``: steps the spike history (and the input history) keep, a power of two.

        ``D`` for inference (the oldest spike a delay reads is ``D`` steps
        old). A learning build also reads the taps of the derivative, up to
        ``D + reach_steps + 1`` steps back (a recurrent tap one further), and
        clears the slot of the coming step while the oldest is still read: it
        keeps the next power of two of ``D + reach_steps + 3``.
        """
        depth = self.spec.depth
        if not self.learns:
            return depth
        need = depth + self.reach_steps + 3
        return 1 << (need - 1).bit_length()

    @property
    def lut_depth(self) -> int:
        """Entries of the Gaussian-derivative table: ``2 max_reach + 1``."""
        return 2 * self.max_reach + 1

    def shared_layout(self) -> dict:
        """``{array: (base, words)}`` of the shared memory (``shared_memory``), in word order.

        The input weights two to a word, the readout weights one to a word,
        the input history (with input delays) four counts to a word.
        """
        layout, base = {}, 0
        arrays = [("w_in", -(-self.inputs * self.neurons // 2)), ("w_out", self.neurons * self.classes)]
        if self.input_delays is not None:
            arrays.append(("history", -(-self.inputs * self.history_depth // 4)))
        for name, words in arrays:
            layout[name] = (base, words)
            base += words
        return layout

    @property
    def channels(self) -> int:
        """Presynaptic channels of a learning build's delays: the inputs, then the neurons."""
        return self.inputs + self.neurons

    # -- (de)serialisation -------------------------------------------------------------
    def to_dict(self) -> dict:
        d = asdict(self)
        d["spec"] = self.spec.to_dict()
        return d

    @classmethod
    def from_dict(cls, data: dict) -> "CoreBuild":
        """A build from :meth:`to_dict`'s output; an unknown key is an error naming it."""
        values = known_fields(cls, data)
        if "spec" in values:
            values["spec"] = CoreSpec.from_dict(values["spec"])
        return cls(**values)
