"""On-chip learning in co-simulation: the RTL core learns a task online, bit-exact with the rule.

:func:`learn_on_core` runs exactly what ``delrec train --learning
three-factor`` runs with ``arithmetic=fixed`` and a batch of one sample (the
chip learns one sample at a time): the same network from the same seed, the
same sample order, the same per-epoch surrogate width and learning-rate
shifts. Each sample goes to the online core in Verilator and to the golden
rule; every spike of every step and every score, learning signal, weight and
delay after every update are compared (:mod:`delrec.sim.tb_online`). Before
training and after each epoch the core evaluates a split with learning off.
So the core's accuracies are the golden rule's, measured on the RTL.

``delrec learn-on-core`` is its command; the default is :data:`ONCHIP_DEFAULTS`,
a delayed-xor small enough to learn in minutes in simulation.
"""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path

import numpy as np

from .online_cosim import OnlineSample, cosimulate_online

__all__ = ["ONCHIP_DEFAULTS", "ONCHIP_TASK_OPTIONS", "learn_on_core", "onchip_configs",
           "plot_onchip_learning"]

#: The task of the on-chip demonstration: two cue patterns 16-20 steps apart on
#: 16 channels, 40 steps per sample (XOR of the cues' identities).
ONCHIP_TASK_OPTIONS = dict(channels=16, patterns=2, cue_channels=4, steps=40, gap_min=16, gap_max=20,
                           train_size=256, val_size=128, test_size=256)

#: The rule's settings for it: 16 neurons with synaptic input delays, one sample per update.
ONCHIP_DEFAULTS = dict(hidden=16, epochs=4, batch_size=1, delay_init=[0.0, 30.0], lr_weight=0.02,
                       lr_delay=4.0, lr_readout=0.002, lr_final=0.3, arithmetic="fixed")


def onchip_configs(task, overrides: dict | None = None):
    """``(OnlineConfig, OnlineTrainConfig)``: :data:`ONCHIP_DEFAULTS` then ``overrides``."""
    from delrec.golden.online_training import make_online_configs

    values = dict(ONCHIP_DEFAULTS)
    values.update(overrides or {})
    config, train = make_online_configs(task, values)
    if train.batch_size != 1:
        raise ValueError(f"The core learns one sample at a time: batch_size must be 1, not "
                         f"{train.batch_size!r}")
    if train.arithmetic != "fixed":
        raise ValueError(f"The core learns in fixed point: arithmetic must be 'fixed', not "
                         f"{train.arithmetic!r}")
    return config, train


def _samples(split, learn: bool, loader=None):
    out = []
    items = loader if loader is not None else ((x[:, None, :], [y]) for x, y in
                                               (split[n] for n in range(len(split))))
    for x, y in items:
        out.append(OnlineSample(x=np.asarray(x[:, 0, :], dtype=np.int64), label=int(y[0]), learn=learn))
    return out


def learn_on_core(task, config, train, out_dir=None, eval_split: str = "val", delay_kind=None,
                  progress: bool = True) -> dict:
    """Learn ``task`` online on the RTL core; return the metrics (also ``out_dir/metrics.json``).

    The accuracies are the RTL's (its scores' argmax), which the testbench
    has checked equal to the golden rule's at every sample.
    """
    from delrec.golden.online_fixed import FixedOnlineNetwork
    from delrec.golden.online_training import make_rule, rates_at
    from delrec.golden.tasks.base import make_loader

    started = time.perf_counter()
    spec, rates, theta = make_rule(config, train)
    net = FixedOnlineNetwork(copy.deepcopy(config), spec, rates, seed=train.seed, theta=theta)
    initial_delays = net.d_in.clone()
    eval_set = _samples(task.split(eval_split), learn=False)
    test_set = _samples(task.split("test"), learn=False)
    samples, segments = [], []

    def add(kind, epoch, items):
        segments.append((kind, epoch, len(samples), len(samples) + len(items)))
        samples.extend(items)

    add("eval", -1, eval_set)
    for epoch in range(train.epochs):
        epoch_config = rates_at(config, train, epoch)
        loader = make_loader(task.train, train.batch_size, shuffle=True,
                             seed=train.seed * 100003 + epoch)
        items = _samples(None, learn=True, loader=loader)
        items[0].rule = (epoch_config.sigma, make_rule(epoch_config, train)[1])
        add("train", epoch, items)
        add("eval", epoch, copy.deepcopy(eval_set))
    add("test", train.epochs - 1, test_set)
    result = cosimulate_online(net, samples, stall=0.0, check_state=False, progress=progress)
    predictions = result.predictions()
    history = []
    for kind, epoch, start, stop in segments:
        correct = sum(int(predictions[n] == samples[n].label) for n in range(start, stop))
        cycles = [c for n in range(start, stop) for c in result.step_cycles[n]]
        entry = dict(kind=kind, epoch=epoch, samples=stop - start, accuracy=correct / (stop - start),
                     cycles_per_step_mean=float(np.mean(cycles)))
        updates = [result.update_cycles[n] for n in range(start, stop) if result.update_cycles[n]]
        if updates:
            entry["update_cycles_mean"] = float(np.mean(updates))
        history.append(entry)
    evals = [h for h in history if h["kind"] == "eval"]
    trains = [h for h in history if h["kind"] == "train"]
    learned = result.golden
    f = learned.spec.delay_frac_bits
    metrics = dict(
        task=task.name, task_options=getattr(train, "task_options", {}), seed=train.seed,
        geometry=result.geometry.to_dict(), bit_exact=True,
        untrained_accuracy=evals[0]["accuracy"],
        eval_split=eval_split, eval_accuracy=[h["accuracy"] for h in evals[1:]],
        train_accuracy_while_learning=[h["accuracy"] for h in trains],
        test_accuracy=history[-1]["accuracy"],
        cycles_per_step_learning=float(np.mean([h["cycles_per_step_mean"] for h in trains])),
        cycles_per_step_inference=float(np.mean([h["cycles_per_step_mean"] for h in evals])),
        # a per-step core has no separate update: its updates are in the learning steps' cycles
        update_cycles=float(np.mean([h["update_cycles_mean"] for h in trains]))
        if any("update_cycles_mean" in h for h in trains) else None,
        samples_simulated=len(samples), steps_simulated=int(sum(len(c) for c in result.step_cycles)),
        delay_mean_initial=float(initial_delays.double().mean() / (1 << f)),
        delay_mean_learned=float(learned.d_in.double().mean() / (1 << f)),
        delays_moved_one_step_or_more=int(((learned.d_in - initial_delays).abs() >= (1 << f)).sum()),
        delays=int(learned.d_in.numel()),
        wall_seconds=time.perf_counter() - started, history=history,
        online_config=config.to_dict(),
    )
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
        initial_steps = initial_delays.double().numpy() / (1 << f)
        learned_steps = learned.d_in.double().numpy() / (1 << f)
        np.savez(out / "delays.npz", initial=initial_steps, learned=learned_steps)
        plot_onchip_learning(metrics, initial_steps, learned_steps, out / "learning.png")
    return metrics


def plot_onchip_learning(metrics: dict, initial: np.ndarray, learned: np.ndarray, path: Path) -> None:
    """Accuracy per epoch (RTL) and how far each delay moved while learning on chip."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    ax = axes[0]
    epochs = np.arange(len(metrics["eval_accuracy"]) + 1)
    ax.plot(epochs, [metrics["untrained_accuracy"]] + metrics["eval_accuracy"], "o-",
            label=f"{metrics['eval_split']} (RTL = golden, bit-exact)")
    ax.plot(epochs[1:], metrics["train_accuracy_while_learning"], "s--", label="train, while learning")
    ax.set(xlabel="epoch (0: untrained)", ylabel="accuracy", ylim=(0, 1.02),
           title="on-chip learning (co-simulation)")
    ax.legend(fontsize="small")
    ax = axes[1]
    moved = (learned - initial).ravel()
    ax.hist(moved, bins=41, color="tab:green")
    ax.axvline(0, color="gray", lw=0.8)
    ax.set(xlabel="learned - initial delay (steps)", ylabel="delays",
           title=f"input delays: {int((np.abs(moved) >= 1).sum())} of {moved.size} moved >= 1 step")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
