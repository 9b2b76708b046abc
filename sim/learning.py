"""Co-simulation of on-chip learning: the core's learning unit against the fixed-point rule.

:func:`cosimulate_learning` runs a sequence of samples through the golden rule
(:class:`delrec.golden.online_fixed.FixedOnlineNetwork`, one sample per batch,
as the chip learns, per-step signal) in this process, recording every step's
spikes, membranes, readout values and scores and, after every step that
learns, every trace, learning signal, delay, readout weight and readout bias;
it writes them with the core's writes (:mod:`delrec.firmware.compiler`: the
network image, the rule's registers and table, each sample's label) to one
``.npz``, builds the learning core once with Verilator and runs
:mod:`delrec.sim.tb_core`, which compares them all. A difference raises
:class:`~delrec.sim.runner.SimulationFailure` naming the sample, step,
quantity, index and both values.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from delrec.arith import LearningRates
from delrec.build import CoreBuild
from delrec.firmware.compiler import compile_network, label_writes, rule_writes

from .cosim import _run, input_events

__all__ = ["LearningSample", "LearningResult", "cosimulate_learning", "learning_build", "random_learning_case"]


@dataclass
class LearningSample:
    """One sample for the learning core.

    Parameters
    ----------
    x : array ``[T, C]``
        Input event counts per step and channel.
    label : int
        The class: the per-step error's target.
    learn : bool
        Learn during the sample (traces, signals, updates), else inference only.
    sigma : float, optional
        A new surrogate width from this sample on (the host reloads the table).
    rates : LearningRates, optional
        New learning-rate shifts from this sample on.
    """

    x: np.ndarray
    label: int
    learn: bool = True
    sigma: float | None = None
    rates: LearningRates | None = None


@dataclass
class LearningResult:
    """What the RTL reported per sample, bit-exact with the golden rule's values.

    ``cycles[n]`` per step (the core's ``CYCLES`` counter), ``scores[n]``
    the final scores, ``golden`` the rule after the last sample.
    """

    build: CoreBuild
    cycles: list
    scores: list
    labels: list
    learned: list
    golden: object
    spikes: list = field(default_factory=list)

    def predictions(self) -> list[int]:
        return [int(np.argmax(s)) for s in self.scores]


def learning_build(net, lanes: int = 1, max_reach: int | None = None) -> CoreBuild:
    """The smallest learning core that runs ``net`` (a ``FixedOnlineNetwork``): its sizes and spec.

    ``max_reach`` defaults to the reach of the net's current table.
    """
    c = net.config
    return CoreBuild(c.inputs, c.hidden, c.classes, net.spec, lanes=lanes, queue="history",
                     input_delays="axonal" if c.input_delays is not None else None, learning="step",
                     max_reach=net.reach if max_reach is None else max_reach)


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy().astype(np.int64)


def _expected(net, r, build: CoreBuild, n: int, learn: bool, check_state: bool) -> tuple[dict, list, list]:
    """The golden values a sample's steps and end are checked against: arrays, checks, final checks."""
    spec, c = build.spec, net.config
    C, N = build.inputs, build.neurons
    h, s = _np(r["membrane"][:, 0]), _np(r["spikes"][:, 0])
    v = h - net.theta * s if c.reset == "soft" else h * (1 - s)
    arrays = {f"spikes{n}": s, f"expect_score{n}": _np(r["scores"][0])}
    checks = []
    if check_state:
        arrays.update({f"expect_membrane{n}": v, f"expect_readout{n}": _np(r["outputs"][:, 0]),
                       f"expect_scores{n}": _np(r["score_steps"][:, 0])})
        checks = [["membrane", "MEMBRANE", spec.v_bits], ["readout", "READOUT", spec.readout_bits],
                  ["scores", "SCORE", spec.score_bits]]
    final = [["score", "SCORE", spec.score_bits]]
    if learn:
        steps = r["learning_steps"]

        def per_step(key, size):
            return np.stack([_np(st["traces"][key][0]) if key in st["traces"] else np.zeros(size, np.int64)
                             for st in steps])

        params = [st["parameters"] for st in steps]
        learned = {"trace": np.concatenate([per_step("d_in", C), per_step("d_rec", N)], 1),
                   "signal": np.stack([_np(st["signal"][0]) for st in steps]),
                   "w_out": np.stack([_np(p["w_out"]).T.reshape(-1) for p in params]),
                   "b_out": np.stack([_np(p["b_out"]) for p in params])}
        targets = {"trace": ("TRACE", spec.trace_bits), "signal": ("SIGNAL", spec.signal_bits),
                   "w_out": ("W_OUT", spec.weight_store_bits),
                   "b_out": ("BIAS_OUT", spec.readout_bias_store_bits)}
        for key, target in (("d_in", "INPUT_DELAY"), ("d_rec", "DELAY")):
            if key in params[0]:
                learned[key] = np.stack([_np(p[key]) for p in params])
                targets[key] = (target, None)
        for key, values in learned.items():
            arrays[f"expect_{key}{n}"] = values
            arrays[f"expect_final_{key}{n}"] = values[-1]
            checks.append([key, *targets[key]])
            final.append([f"final_{key}", *targets[key]])
    return arrays, checks, final


def cosimulate_learning(net, samples: list[LearningSample], build: CoreBuild | None = None,
                        stall: float = 0.2, seed: int = 0, check_state: bool = True, waves: bool = False,
                        build_root: Path | None = None, work_dir: Path | None = None,
                        progress: bool = False) -> LearningResult:
    """Run ``samples`` on a copy of ``net`` in golden and on a learning core; compare everything.

    ``net`` is a :class:`~delrec.golden.online_fixed.FixedOnlineNetwork`
    (left unchanged; the learned golden copy is in the result); ``build``
    defaults to :func:`learning_build` with the widest table any sample
    loads.
    """
    golden = copy.deepcopy(net)
    if build is None:
        reaches = [golden.reach]
        probe = copy.deepcopy(golden)
        for sample in samples:
            if sample.sigma is not None:
                probe.set_sigma(sample.sigma)
                reaches.append(probe.reach)
        build = learning_build(golden, max_reach=max(reaches))
    c = golden.config
    if (c.inputs, c.hidden, c.classes) != (build.inputs, build.neurons, build.classes):
        raise ValueError(f"A learning core runs a network of its own sizes: the network has {c.inputs} "
                         f"inputs, {c.hidden} neurons and {c.classes} classes, the build {build.inputs}, "
                         f"{build.neurons} and {build.classes}")
    xs = [np.asarray(sample.x, dtype=np.int64) for sample in samples]
    for n, x in enumerate(xs):
        if x.ndim != 2 or x.shape[1] != c.inputs:
            raise ValueError(f"Sample {n} must have shape [T, {c.inputs}], not {list(x.shape)}")
    max_input = max([1] + [int(x.max()) for x in xs if x.size])
    golden.rule()          # the rule must be one the core runs (named error otherwise)
    arrays, plan, labels, learned = {}, [], [], []
    state = None
    for n, (sample, x) in enumerate(tqdm(list(zip(samples, xs)), desc="golden rule", unit="sample",
                                         disable=not progress)):
        writes = [compile_network(golden.to_image(), build, max_input=max_input).writes] if n == 0 else []
        if sample.sigma is not None:
            golden.set_sigma(sample.sigma)
        if sample.rates is not None:
            golden.rates = sample.rates
        if (sample.sigma, sample.rates, sample.learn) != (None, None, state):
            writes.append(rule_writes(golden.rule(), build, learn=sample.learn))
            state = sample.learn
        writes.append(label_writes(build, sample.label))
        label = torch.tensor([int(sample.label)])
        r = golden.run(torch.from_numpy(x)[:, None, :], label, learn=sample.learn, record=True)
        values, checks, final = _expected(golden, r, build, n, sample.learn, check_state)
        arrays.update(values)
        arrays.update({f"writes{n}": np.concatenate(writes), f"events{n}": input_events(x)})
        plan.append(dict(steps=int(x.shape[0]), checks=checks, final=final))
        labels.append(int(sample.label))
        learned.append(bool(sample.learn))
    summary, _ = _run(build, arrays, plan, stall, seed, waves, build_root, work_dir, "learning.npz")
    return LearningResult(build=build, cycles=[s["cycles"] for s in summary],
                          scores=[s["scores"] for s in summary], labels=labels, learned=learned,
                          golden=golden, spikes=[s["spikes"] for s in summary])


def random_learning_case(rng: np.random.Generator, *, recurrent: bool, reset: str = "soft", leak: str = "shift",
                         inputs: int = 5, neurons: int = 6, classes: int = 3, samples: int = 3,
                         steps=(10, 16), delay_bits: int = 4):
    """A random network of the per-step rule and its samples, for bit-exact tests of the learning core.

    Everything the core takes at run time varies: the surrogate width (one
    sample changes it), the learning-rate shifts, ``loss_start``, the
    readout bias flag, the input rate and counts (1..3 events per channel
    and step), the labels; the last sample repeats the first with learning
    off. A hard reset comes with ungated traces (the core's form), a
    multiply leak with DelRec's short time constant (``tau = 1.05``).
    """
    from dataclasses import replace

    from delrec.golden.online import OnlineConfig
    from delrec.golden.online_fixed import ONLINE_SPEC, FixedOnlineNetwork

    spec = replace(ONLINE_SPEC, leak=leak, delay_bits=delay_bits)
    config = OnlineConfig(inputs=inputs, hidden=neurons, classes=classes, input_delays="axonal",
                          signal="step", update_every=1, recurrent=recurrent,
                          recurrent_delays="axonal" if recurrent else None, reset=reset,
                          gate_traces=False, tau=1.05 if leak == "multiply" else 2.0,
                          recurrent_gain=float(rng.uniform(1, 3)), sigma=float(rng.uniform(0.5, 1.5)),
                          radius=3.0, delay_init=(0.0, float(rng.uniform(2, (1 << delay_bits) - 1))),
                          max_delay=(1 << delay_bits) - 1, learn_weights=False,
                          readout_bias=bool(rng.integers(0, 2)), loss_start=int(rng.integers(0, 4)),
                          input_gain=float(rng.uniform(4, 10)), readout_gain=float(rng.uniform(0.5, 3)))
    rates = LearningRates(lr_delay_shift=int(rng.integers(12, 20)), lr_readout_shift=int(rng.integers(1, 6)))
    net = FixedOnlineNetwork(config, spec, rates, seed=int(rng.integers(0, 1 << 16)))
    out = []
    for n in range(samples):
        T = int(rng.integers(steps[0], steps[1] + 1))
        rate = float(rng.uniform(0.1, 0.5))
        x = rng.integers(1, 4, size=(T, inputs)) * (rng.random((T, inputs)) < rate)
        sigma = float(rng.uniform(0.5, 1.5)) if n == 1 else None
        out.append(LearningSample(x=x.astype(np.int64), label=int(rng.integers(0, classes)), sigma=sigma))
    out.append(LearningSample(x=out[0].x, label=out[0].label, learn=False))
    return net, out
