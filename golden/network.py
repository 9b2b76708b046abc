"""Networks of the DelRec study: configuration, construction, statistics.

A network is ``input [T, B, C] -> (Linear -> [BatchNorm] -> LIF layer) x L ->
readout``. The *delay layers* (all hidden layers but the first when there are
several, as in the paper's SHD study; the only one otherwise) take the form
the model kind names:

=================  ==========================================================
``delrec``         recurrent connections with axonal delays (DelRec)
``delrec-synaptic``recurrent connections with one delay per connection
``recurrent``      recurrent connections without delays (one-step recurrence)
``ff-delays``      feedforward delays on the projection into the layer
``feedforward``    no recurrence, no delays
=================  ==========================================================
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

import torch
from torch import nn

from .layers import DelayedLinear, LIFLayer, RecurrentLIF
from .lif import LIFParameters, surrogate_from_name
from .readout import make_readout
from .spread import Delays

__all__ = ["MODEL_KINDS", "ModelConfig", "DelayNetwork"]

MODEL_KINDS = ("delrec", "delrec-synaptic", "recurrent", "ff-delays", "feedforward")


@dataclass
class ModelConfig:
    """Everything needed to rebuild a network (stored in every checkpoint)."""

    kind: str = "delrec"
    inputs: int = 32
    classes: int = 4
    hidden: list[int] = field(default_factory=lambda: [64])
    tau: float = 1.05
    threshold: float = 1.0
    reset: str = "hard"
    detach_reset: bool = True
    surrogate: str = "atan"
    surrogate_scale: float = 5.0
    readout: str = "leaky"
    readout_tau: float = 1.05
    bias: bool = True
    batch_norm: bool = False
    dropout: float = 0.0
    recurrent_dropout: float = 0.0
    delay_init: list[float] = field(default_factory=lambda: [0.0, 30.0])
    sigma0: float = 10.0
    learn_width: bool = False
    normalize_spread: bool = False
    ff_delays: str = "synaptic"

    def __post_init__(self):
        if self.kind not in MODEL_KINDS:
            raise ValueError(f"Model kind must be one of {MODEL_KINDS}, not {self.kind!r}")
        if not self.hidden or any(int(n) < 1 for n in self.hidden):
            raise ValueError(f"Hidden layer sizes must be positive integers, not {self.hidden!r}")
        if self.inputs < 1 or self.classes < 2:
            raise ValueError(f"Need at least 1 input and 2 classes, not inputs={self.inputs!r}, "
                             f"classes={self.classes!r}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"Dropout must be in [0, 1), not {self.dropout!r}")
        self.hidden = [int(n) for n in self.hidden]
        self.delay_init = [float(v) for v in self.delay_init]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "ModelConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"Unknown model configuration keys {sorted(unknown)}")
        return cls(**data)

    def lif(self) -> LIFParameters:
        return LIFParameters(tau=self.tau, threshold=self.threshold, reset=self.reset,
                             detach_reset=self.detach_reset,
                             surrogate=surrogate_from_name(self.surrogate, self.surrogate_scale))

    def delay_layers(self) -> list[int]:
        return list(range(1, len(self.hidden))) if len(self.hidden) > 1 else [0]


class DelayNetwork(nn.Module):
    """A spiking network of the DelRec study; ``forward([T, B, C]) -> [T, B, classes]``.

    After each forward pass ``spike_counts`` holds, per hidden layer, the
    number of spikes emitted (detached), for activity statistics.
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        lif = config.lif()
        delay_kw = dict(delay_init=tuple(config.delay_init), sigma=config.sigma0,
                        learn_width=config.learn_width, normalize_spread=config.normalize_spread)
        self.projections = nn.ModuleList()
        self.norms = nn.ModuleList()
        self.neurons = nn.ModuleList()
        width = config.inputs
        for index, size in enumerate(config.hidden):
            delayed = index in config.delay_layers()
            if delayed and config.kind == "ff-delays":
                proj = DelayedLinear(width, size, delays=config.ff_delays, bias=config.bias, **delay_kw)
            else:
                proj = nn.Linear(width, size, bias=config.bias)
            nn.init.kaiming_uniform_(proj.weight, nonlinearity="relu")
            self.projections.append(proj)
            self.norms.append(nn.BatchNorm1d(size) if config.batch_norm else nn.Identity())
            if delayed and config.kind in ("delrec", "delrec-synaptic", "recurrent"):
                kind = {"delrec": "axonal", "delrec-synaptic": "synaptic", "recurrent": None}[config.kind]
                self.neurons.append(RecurrentLIF(size, lif, delays=kind,
                                                 recurrent_dropout=config.recurrent_dropout, **delay_kw))
            else:
                self.neurons.append(LIFLayer(size, lif))
            width = size
        self.dropout = nn.Dropout(config.dropout)
        self.readout = make_readout(config.readout, width, config.classes, config.readout_tau,
                                    bias=config.bias)
        self.spike_counts: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 3 or x.shape[-1] != self.config.inputs:
            raise ValueError(f"Input must have shape [T, B, {self.config.inputs}], "
                             f"not {tuple(x.shape)}")
        counts = []
        for proj, norm, neurons in zip(self.projections, self.norms, self.neurons):
            current = proj(x)
            if not isinstance(norm, nn.Identity):
                T, B, N = current.shape
                current = norm(current.reshape(T * B, N)).reshape(T, B, N)
            x = neurons(current)
            counts.append(x.detach().sum())
            x = self.dropout(x)
        self.spike_counts = counts
        return self.readout(x)

    def scores(self, x: torch.Tensor) -> torch.Tensor:
        """Class scores ``[B, classes]`` (the logits of the loss)."""
        return self.readout.scores(self(x))

    # -- delays -------------------------------------------------------------

    def delay_modules(self) -> list[Delays]:
        return [m for m in self.modules() if isinstance(m, Delays)]

    def set_sigma(self, sigma: float) -> None:
        for d in self.delay_modules():
            d.set_sigma(sigma)

    def clamp_delays(self) -> None:
        for d in self.delay_modules():
            d.clamp_()

    def parameter_groups(self) -> tuple[list[nn.Parameter], list[nn.Parameter], list[nn.Parameter]]:
        """``(weights, no_decay, delays)``: the three optimizer groups of the recipe."""
        delay_ids = set()
        delays = []
        for d in self.delay_modules():
            for p in d.parameters():
                delay_ids.add(id(p))
                delays.append(p)
        weights, no_decay = [], []
        for name, p in self.named_parameters():
            if id(p) in delay_ids:
                continue
            (no_decay if (p.dim() == 1) else weights).append(p)
        return weights, no_decay, delays
