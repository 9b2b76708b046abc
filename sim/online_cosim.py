"""Co-simulation of the online-learning core against the fixed-point three-factor rule.

:func:`cosimulate_online` runs a sequence of samples through the golden
rule (:class:`delrec.golden.online_fixed.FixedOnlineNetwork`, one sample per
batch, as the chip learns) in this process, records every step's spikes,
membranes and outputs, the learning state before each update and every
parameter after it, writes them with the core's writes and signal beats
(:mod:`delrec.firmware.online`) to one ``.npz``, builds the core once with
Verilator and runs :mod:`delrec.sim.tb_online`, which compares them all. A
difference raises :class:`~delrec.sim.runner.SimulationFailure` naming the
sample, step, quantity, index and both values.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from delrec.firmware.online import (label_writes, online_geometry, parameter_writes, rule_writes,
                                    signal_beats)
from delrec.hw.online_ports import (OnlineCounter, OnlineGeometry, OnlineReadTarget,
                                    OnlineWriteTarget, SignalKind)

from .cosim import input_events
from .runner import SimulationFailure, build_component, default_build_root, run_testbench

__all__ = ["OnlineSample", "OnlineCosimResult", "cosimulate_online", "online_port_fields",
           "random_online_case"]


@dataclass
class OnlineSample:
    """One sample for the core.

    Parameters
    ----------
    x : array ``[T, C]``
        Input event counts per step and channel.
    label : int or None
        The class; with ``learn`` and no ``signal`` the host sends the
        readout errors ``round((softmax(scores) - onehot) top)``.
    learn : bool
        Keep the learning state and apply an update at the end.
    signal : array ``[N]`` or None
        Per-neuron learning signals sent instead of the errors (the readout
        then does not learn).
    bad_beats : int
        Signal beats with an index that does not exist, sent before the
        commit: the core must drop and count them.
    rule : (sigma, LearningRates) or None
        A new surrogate width and learning-rate shifts from this
        sample on: the host reloads the LUT and the registers.
    """

    x: np.ndarray
    label: int | None = None
    learn: bool = True
    signal: np.ndarray | None = None
    bad_beats: int = 0
    rule: tuple | None = None


@dataclass
class OnlineCosimResult:
    """What the RTL reported per sample, bit-exact with the golden rule's values.

    ``step_cycles[n]`` per step (the core's ``STEP_CYCLES``),
    ``update_cycles[n]`` (``None`` for a sample that did not learn),
    ``scores[n]``, ``predictions()``; ``golden`` is the golden network after
    the last sample, ``labels`` the samples' labels.
    """

    geometry: OnlineGeometry
    step_cycles: list
    update_cycles: list
    scores: list
    labels: list
    learned: list
    golden: object
    summary: list = field(default_factory=list)

    def predictions(self) -> list[int]:
        return [int(np.argmax(s)) for s in self.scores]


def online_port_fields(geometry: OnlineGeometry) -> dict:
    """``{stream: {field: [offset, width]}}`` of the online core's stream payloads."""
    layouts = dict(inputs=geometry.input_layout(), spikes=geometry.spike_layout(),
                   signal=geometry.signal_layout(), write=geometry.write_layout(),
                   read=geometry.read_layout(), read_data=geometry.read_data_layout())
    return {stream: {name: [f.offset, f.width] for name, f in layout}
            for stream, layout in layouts.items()}


def _np(t) -> np.ndarray:
    return t.detach().cpu().numpy().astype(np.int64)


def _delays(params: dict, geometry: OnlineGeometry) -> np.ndarray:
    """The core's ``DELAY`` memory: the input delays, then (recurrent) the recurrent ones."""
    if geometry.recurrent:
        return np.concatenate([_np(params["d_in"]), _np(params["d_rec"])])
    return _np(params["d_in"])


def _expected_cycles(geometry: OnlineGeometry, net, sample: OnlineSample, delays: np.ndarray,
                     charge: np.ndarray, spikes: np.ndarray):
    """The documented cycles of each step and of the update of one sample (no stalls).

    ``delays [T, ...]``: the delays each step runs with.
    """
    from delrec.hw.online_ports import step_cycles, update_cycles

    c, s = net.config, net.spec
    per_step = geometry.signal == "step"
    f, reach = s.delay_frac_bits, (len(net.lut) - 1) // 2
    learn_synapses = sample.learn and (c.learn_weights or c.learn_delays) and not per_step
    near = np.abs(charge - net.theta) < (1 << s.psi_bits)  # psi > 0
    steps = []
    # the layer's own spikes (channels C.. of a recurrent layer) are read a step later
    later = (np.arange(delays.shape[-1]) >= geometry.inputs).astype(np.int64) \
        if geometry.recurrent else 0
    for t in range(spikes.shape[0]):
        lo = np.maximum(0, -((reach - delays[t]) >> f))   # ceil((d - R) / 2^f), at least 0
        hi = (delays[t] + reach) >> f
        taps = int(np.clip(np.minimum(hi, t - later) - lo + 1, 0, None).sum()) if sample.learn and \
            c.learn_delays else 0
        counts = t >= c.loss_start
        passes = int(near[t].sum()) if learn_synapses and counts else 0
        steps.append(step_cycles(geometry, spikes=int(spikes[t].sum()), taps=taps,
                                 eligibility_passes=passes, learn=sample.learn,
                                 step_update=per_step and sample.learn and counts,
                                 delays_learn=c.learn_delays))
    update = update_cycles(geometry, errors=sample.signal is None, learn_synapses=bool(
        c.learn_weights or c.learn_delays)) if sample.learn and not per_step else None
    return steps, update


def cosimulate_online(net, samples: list[OnlineSample], stall: float = 0.2, seed: int = 0,
                      check_state: bool = True, max_steps: int = 255, count_bits: int = 4,
                      max_reach: int | None = None, build_root: Path | None = None,
                      work_dir: Path | None = None, progress: bool = False) -> OnlineCosimResult:
    """Run ``samples`` on a copy of ``net`` in golden and on the core; compare everything.

    ``net`` is a :class:`~delrec.golden.online_fixed.FixedOnlineNetwork`
    (left unchanged; the learned golden copy is in the result).
    ``max_reach`` defaults to the widest LUT any sample loads.
    """
    from delrec.hw.online_core import OnlineCore

    golden = copy.deepcopy(net)
    if max_reach is None:
        reaches = [(len(golden.lut) - 1) // 2]
        for sample in samples:
            if sample.rule is not None:
                probe = copy.deepcopy(golden)
                probe.set_sigma(sample.rule[0])
                reaches.append((len(probe.lut) - 1) // 2)
        max_reach = max(reaches)
    geometry = online_geometry(golden, max_steps=max_steps, count_bits=count_bits, max_reach=max_reach)
    C, N, K = geometry.inputs, geometry.neurons, geometry.classes
    s = geometry.spec
    per_step = geometry.signal == "step"
    arrays = {"writes_init": np.concatenate([parameter_writes(golden, geometry),
                                             rule_writes(golden, geometry, learn=True)])}
    meta, labels, learned, expected_cycles = [], [], [], []
    current_learn = True
    for n, sample in enumerate(tqdm(samples, desc="golden rule", unit="sample", disable=not progress)):
        x = np.asarray(sample.x, dtype=np.int64)
        if x.ndim != 2 or x.shape[1] != C:
            raise ValueError(f"Sample {n} must have shape [T, {C}], not {list(x.shape)}")
        if x.size and (x.min() < 0 or x.max() >= (1 << count_bits)):
            raise ValueError(f"Sample {n} has an event count {int(x.max() if x.max() > 0 else x.min())} "
                             f"outside the core's 0..{(1 << count_bits) - 1}")
        if sample.learn and x.shape[0] > max_steps:
            raise ValueError(f"Sample {n} has {x.shape[0]} steps, more than the core's "
                             f"max_steps {max_steps} while learning")
        rule = np.zeros((0, 3), np.int64)
        if sample.rule is not None:
            sigma, rates = sample.rule
            golden.set_sigma(sigma)
            golden.rates = rates
        if sample.rule is not None or sample.learn != current_learn:
            rule = rule_writes(golden, geometry, learn=sample.learn)
            current_learn = sample.learn
        if per_step and sample.label is not None:
            rule = np.concatenate([rule, label_writes(geometry, sample.label)])
        d_start = _delays(golden.parameters(), geometry)
        xt = torch.from_numpy(x)[:, None, :]
        label = None if sample.label is None else torch.tensor([int(sample.label)])
        if sample.learn and per_step:
            if label is None or sample.signal is not None:
                raise ValueError(f"Sample {n}: a per-step core learns from a label, not a signal")
            r = golden.run(xt, label, learn=True, record=True)
        elif sample.learn:
            if sample.signal is None and label is None:
                raise ValueError(f"Sample {n} learns but has neither a label nor a signal")
            signal = None if sample.signal is None else \
                torch.as_tensor(np.asarray(sample.signal, np.int64)).view(1, N)
            r = golden.run(xt, None if signal is not None else label, learn=True, signal=signal,
                           record=True)
        else:
            r = golden.run(xt, label, record=True)
        h = _np(r["membrane"][:, 0])
        spikes = _np(r["spikes"][:, 0])
        v = h - s.theta * spikes  # soft reset (h - theta >= 0 when it spiked: no saturation)
        arrays.update({f"rule{n}": rule, f"events{n}": input_events(x), f"spikes{n}": spikes,
                       f"v{n}": v, f"outputs{n}": _np(r["outputs"][:, 0]),
                       f"scores{n}": _np(r["scores"][0])})
        steps_run = x.shape[0]
        d_during = np.broadcast_to(d_start, (steps_run,) + d_start.shape)
        if sample.learn and per_step:
            record = r["learning_steps"]
            params = [st["parameters"] for st in record]
            d_during = np.stack([d_start] + [_delays(p, geometry) for p in params[:-1]])[:steps_run]
            if check_state and record:   # what the testbench compares after every step
                if "d_in" in record[0]["traces"]:   # input channels, then recurrent ones
                    arrays[f"step_trace_d{n}"] = np.stack([
                        np.concatenate([_np(st["traces"][key][0]) for key in ("d_in", "d_rec")
                                        if key in st["traces"]]) for st in record])
                arrays[f"step_signal{n}"] = np.stack([_np(st["signal"][0]) for st in record])
                arrays[f"step_d_in{n}"] = np.stack([_delays(p, geometry) for p in params])
                for name in ("w_out", "b_out"):
                    arrays[f"step_{name}{n}"] = np.stack([_np(p[name]).reshape(-1) for p in params])
            for name in ("w_in", "bias", "w_out", "b_out") + (("w_rec",) if geometry.recurrent else ()):
                arrays[f"{name}{n}"] = _np(getattr(golden, name))
            wfrac = s.weight_frac_bits   # the core keeps the forward part of the fixed weights
            for name in ("w_in", "w_rec"):
                if f"{name}{n}" in arrays:
                    arrays[f"{name}{n}"] = (arrays[f"{name}{n}"] >> wfrac) << wfrac
            arrays[f"d_in{n}"] = _delays(golden.parameters(), geometry)
        elif sample.learn:
            state = r["learning"]
            for name, key in (("trace_w", "w_in"), ("trace_d", "d_in"), ("trace_b", "bias")):
                if key in state["traces"]:
                    arrays[f"{name}{n}"] = _np(state["traces"][key][0])
            for name, key in (("elig_w", "w_in"), ("elig_d", "d_in"), ("elig_b", "bias"),
                              ("count", "spikes")):
                if key in state["eligibility"]:
                    arrays[f"{name}{n}"] = _np(state["eligibility"][key][0])
            arrays[f"signal{n}"] = _np(state["signal"][0])
            if sample.signal is not None:
                beats = signal_beats(geometry, sample.signal, SignalKind.NEURON)
                limit = N
            else:
                err = golden.output_error(r["scores"], label)[0]
                beats = signal_beats(geometry, _np(err), SignalKind.ERROR)
                limit = K
            bad = [(beats[0, 0], limit + b, 1, 0) for b in range(sample.bad_beats)]
            if bad and limit + sample.bad_beats > (1 << geometry.signal_index_bits):
                raise ValueError(f"Only {(1 << geometry.signal_index_bits) - limit} bad indexes fit "
                                 f"the signal stream's index field, not {sample.bad_beats}")
            arrays[f"beats{n}"] = np.concatenate([np.array(bad, np.int64).reshape(-1, 4), beats])
            for name in ("w_in", "d_in", "bias", "w_out", "b_out"):
                arrays[f"{name}{n}"] = _np(getattr(golden, name))
        expected_cycles.append(_expected_cycles(geometry, golden, sample, d_during, h, spikes))
        meta.append({"steps": int(x.shape[0]), "learn": bool(sample.learn)})
        labels.append(sample.label)
        learned.append(bool(sample.learn))
    header = dict(seed=seed, stall=stall, check_state=check_state, neurons=N, classes=K,
                  signal=geometry.signal,
                  samples=meta, fields=online_port_fields(geometry),
                  write_targets={t.name: t.value for t in OnlineWriteTarget},
                  read_targets={t.name: t.value for t in OnlineReadTarget},
                  counters={c.name: int(c) for c in OnlineCounter},
                  widths=dict(v=s.v_bits, output=geometry.output_width, score=geometry.score_width,
                              trace=s.trace_bits, elig=geometry.eligibility_width,
                              signal=s.signal_bits, weight=geometry.weight_width,
                              bias=geometry.bias_width))
    core = OnlineCore(inputs=C, neurons=N, classes=K, spec=s,
                      delay_kind=geometry.delay_kind, max_reach=geometry.max_reach,
                      max_steps=max_steps, count_bits=count_bits, signal=geometry.signal,
                      recurrent=geometry.recurrent)
    name = (f"online_{geometry.delay_kind}_{geometry.signal}{'_rec' if geometry.recurrent else ''}"
            f"_c{C}_n{N}_k{K}_r{geometry.max_reach}")
    sim = build_component(core, name, Path(build_root or default_build_root()))
    digest = hashlib.sha256(json.dumps(header, sort_keys=True).encode()).hexdigest()[:8]
    work_dir = Path(work_dir or sim.build_dir / f"run-{seed}-{digest}")
    summary = run_testbench(sim, "delrec.sim.tb_online", header, arrays, work_dir, "online.npz", seed=seed)
    data_path = Path(work_dir).resolve() / "online.npz"
    bad = sum(sample.bad_beats for sample in samples if sample.learn)
    final = summary[-1]
    if (final["bad_signals"], final["dropped_events"], final["overruns"]) != (bad, 0, 0):
        raise SimulationFailure(f"The core counted {final['bad_signals']} bad signal beats (sent "
                                f"{bad}), {final['dropped_events']} dropped events and "
                                f"{final['overruns']} overruns (expected none)\ntestbench data: {data_path}")
    if stall == 0:  # the documented cycle counts (hw.online_ports.step_cycles / update_cycles)
        for n, (record, (steps_want, update_want)) in enumerate(zip(summary, expected_cycles)):
            got = record["step_cycles"]
            if got != steps_want:
                t = next(t for t, (a, b) in enumerate(zip(got, steps_want)) if a != b)
                raise SimulationFailure(f"sample {n}, step {t}: the core took {got[t]} cycles, the "
                                        f"documented count is {steps_want[t]}")
            if update_want is not None and record.get("update_cycles") != update_want:
                raise SimulationFailure(f"sample {n}: the update took {record.get('update_cycles')} "
                                        f"cycles, the documented count is {update_want}")
    return OnlineCosimResult(geometry=geometry, step_cycles=[r["step_cycles"] for r in summary],
                             update_cycles=[r.get("update_cycles") for r in summary],
                             scores=[r["scores"] for r in summary], labels=labels, learned=learned,
                             golden=golden, summary=summary)



def random_online_case(kind: str, rng: np.random.Generator, inputs: int = 6, neurons: int = 5,
                       classes: int = 3, samples: int = 3, steps=(10, 30), max_sigma: float = 1.3,
                       signal: str = "sample", recurrent: bool = False):
    """A random network for a fixed core size and ``samples`` random samples to learn from.

    Everything the core takes at run time varies: what learns (weights,
    delays, readout bias), ``loss_start``, the surrogate width (a LUT of up
    to ``max_sigma``), the learning-rate shifts, the weights' scale (some
    saturate), the input rate and counts (1..3 events per channel and
    step). With a per-sample ``signal`` the last sample learns from random
    per-neuron signals spanning the whole signed range, the others from
    readout errors, and every learning sample also sends one bad signal
    beat. With a per-step one (axonal ``kind``) every sample learns from
    its label, with fixed input weights and an update every step;
    ``recurrent`` (per step) adds recurrent weights and axonal delays.
    """
    from delrec.arith import LearningRates
    from delrec.golden.online import OnlineConfig
    from delrec.golden.online_fixed import FixedOnlineNetwork

    per_step = signal == "step"
    learn_w, learn_d = [(True, True), (False, True), (True, False)][int(rng.integers(0, 3))]
    if per_step:
        learn_w, learn_d = False, True
    config = OnlineConfig(inputs=inputs, hidden=neurons, classes=classes, input_delays=kind,
                          signal=signal, update_every=1 if per_step else 0, recurrent=recurrent,
                          recurrent_delays="axonal" if recurrent else None,
                          recurrent_gain=float(rng.uniform(0.5, 3)),
                          sigma=float(rng.uniform(0.4, max_sigma)), radius=3.0,
                          delay_init=(0.0, float(rng.uniform(2, 40))), learn_weights=learn_w,
                          learn_delays=learn_d, readout_bias=bool(rng.integers(0, 2)),
                          loss_start=int(rng.integers(0, 6)), input_gain=float(rng.uniform(1, 10)),
                          readout_gain=float(rng.uniform(0.2, 3)))
    rates = LearningRates(lr_weight_shift=int(rng.integers(6, 16)),
                          lr_delay_shift=int(rng.integers(14, 24) if per_step else rng.integers(8, 18)),
                          lr_readout_shift=int(rng.integers(1, 8)))
    net = FixedOnlineNetwork(config, rates=rates, seed=int(rng.integers(0, 1 << 16)))
    spec = net.spec
    out = []
    for n in range(samples):
        T = int(rng.integers(steps[0], steps[1] + 1))
        rate = float(rng.uniform(0.05, 0.5))
        x = rng.integers(1, 4, size=(T, inputs)) * (rng.random((T, inputs)) < rate)
        signal = None
        if n == samples - 1 and not per_step:
            lo, hi = -(1 << (spec.signal_bits - 1)), (1 << (spec.signal_bits - 1)) - 1
            signal = rng.integers(lo, hi + 1, size=neurons)
            signal[0], signal[-1] = lo, hi
        out.append(OnlineSample(x=x.astype(np.int64), label=int(rng.integers(0, classes)),
                                signal=signal, bad_beats=0 if per_step else 1))
    # drawn last, so that the cases above stay those of the same seed without it
    net.spec = dataclasses.replace(net.spec, feedback_frac_bits=4 * int(rng.integers(0, 2)))
    return net, out
