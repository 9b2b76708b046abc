"""On-chip learning in co-simulation: the core learns online, bit-exact with the three-factor rule.

Two ways in, one schedule. :func:`learn_on_core` lets a network of the
online rule learn a task from its random start, exactly as ``delrec train
--learning three-factor`` with ``arithmetic=fixed`` and a batch of one sample
would (the same network from the same seed, the same sample order, the same
per-epoch surrogate width and learning-rate shifts). :func:`learn_checkpoint_on_core`
takes a network trained offline with BPTT (DelRec), quantizes it for a
learning core and lets it keep learning its input delays, recurrent delays
and readout on chip. Either way the samples go to the learning core in
Verilator and to the golden rule; every spike and score, and every trace,
signal, delay and readout weight after every learning step is compared
(:mod:`delrec.sim.learning`); before learning and after each epoch the core
evaluates a split with learning off. The accuracies are the RTL's.

``delrec learn-on-core`` is its command; the default is :data:`ONCHIP_DEFAULTS`,
a delayed-xor small enough to learn in minutes in simulation.
"""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path

import numpy as np

from .learning import LearningSample, cosimulate_learning, learning_build

__all__ = ["CHECKPOINT_RULE", "ONCHIP_DEFAULTS", "ONCHIP_TASK_OPTIONS", "learn_on_core", "learn_checkpoint_on_core",
           "onchip_configs", "plot_onchip_learning", "run_schedule"]

#: The task of the on-chip demonstration: two cue patterns 16-20 steps apart on
#: 16 channels, 40 steps per sample (XOR of the cues' identities).
ONCHIP_TASK_OPTIONS = dict(channels=16, patterns=2, cue_channels=4, steps=40, gap_min=16, gap_max=20,
                           train_size=256, val_size=128, test_size=256)

#: The rule's settings for it: 16 neurons with axonal input delays learning every step (the
#: per-step signal the core forms from the label), one sample per update.
ONCHIP_DEFAULTS = dict(hidden=16, epochs=4, batch_size=1, delay_init=[0.0, 30.0], lr_weight=0.02,
                       lr_delay=4.0, lr_readout=0.002, lr_final=0.3, arithmetic="fixed",
                       input_delays="axonal", signal="step", update_every=1, learn_weights=False,
                       loss="mse")


#: The rule a network trained offline keeps learning with by default (:func:`learn_checkpoint_on_core`,
#: ``delrec learn-on-core --from``, the demo's on-chip stage). Gentle rates: on a delayed-xor
#: network trained with BPTT (32 -> 32 -> 4, 89 % on 64 validation samples), 96 samples of
#: learning in the golden rule kept 91 % with ``k_d = 26, k_out = 8`` and fell to 48 % with
#: ``k_d = 22, k_out = 4`` (55 % with ``k_d = 22, k_out = 10``: the delays' rate decides).
CHECKPOINT_RULE = dict(sigma=1.0, lr_delay_shift=26, lr_readout_shift=8, loss_start=0, target=1.0)


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


def _samples(split, learn: bool, count: int | None = None, loader=None) -> list[LearningSample]:
    items = loader if loader is not None else ((x[:, None, :], [y]) for x, y in
                                               (split[n] for n in range(len(split))))
    out = []
    for x, y in items:
        if count is not None and len(out) == count:
            break
        out.append(LearningSample(x=np.asarray(x[:, 0, :], dtype=np.int64), label=int(y[0]), learn=learn))
    return out


def run_schedule(net, epochs: list, eval_set: list, test_set: list, *, build=None, progress: bool = True,
                 build_root=None, work_dir=None) -> tuple[list, object]:
    """Evaluate, then per epoch learn its samples and evaluate, then test: one co-simulation.

    ``epochs`` holds per epoch ``(samples, sigma, rates)``: the learning
    samples and the surrogate width and shifts they learn with. Returns the
    history (accuracy and cycles per segment, from the RTL) and the result
    of :func:`~delrec.sim.learning.cosimulate_learning`.
    """
    samples, segments = [], []

    def add(kind, epoch, items):
        segments.append((kind, epoch, len(samples), len(samples) + len(items)))
        samples.extend(items)

    add("eval", -1, copy.deepcopy(eval_set))
    for epoch, (items, sigma, rates) in enumerate(epochs):
        items = copy.deepcopy(items)
        items[0].sigma, items[0].rates = sigma, rates
        add("train", epoch, items)
        add("eval", epoch, copy.deepcopy(eval_set))
    add("test", len(epochs) - 1, copy.deepcopy(test_set))
    result = cosimulate_learning(net, samples, build=build, stall=0.0, check_state=False, progress=progress,
                                 build_root=build_root, work_dir=work_dir)
    predictions = result.predictions()
    history = []
    for kind, epoch, start, stop in segments:
        correct = sum(int(predictions[n] == samples[n].label) for n in range(start, stop))
        cycles = [c for n in range(start, stop) for c in result.cycles[n]]
        history.append(dict(kind=kind, epoch=epoch, samples=stop - start, accuracy=correct / (stop - start),
                            cycles_per_step_mean=float(np.mean(cycles))))
    return history, result


def _delay_steps(net, name: str) -> np.ndarray | None:
    d = getattr(net, name)
    return None if d is None else d.double().numpy() / (1 << net.spec.delay_frac_bits)


def _metrics(task, net, result, history, started: float, eval_split: str, extra: dict) -> dict:
    """The run's metrics: accuracies (RTL), cycles, how far the delays and the readout moved."""
    learned = result.golden
    evals = [h for h in history if h["kind"] == "eval"]
    trains = [h for h in history if h["kind"] == "train"]
    delays = {}
    for name in ("d_in", "d_rec"):
        before, after = _delay_steps(net, name), _delay_steps(learned, name)
        if before is not None:
            moved = np.abs(after - before)
            delays[name] = dict(count=int(before.size), mean_initial=float(before.mean()),
                                mean_learned=float(after.mean()), moved_one_step_or_more=int((moved >= 1).sum()),
                                changed=int((moved > 0).sum()))
    readout_changed = int((learned.w_out != net.w_out).sum())
    return dict(
        task=task.name, build=result.build.to_dict(), bit_exact=True, eval_split=eval_split,
        untrained_accuracy=evals[0]["accuracy"], eval_accuracy=[h["accuracy"] for h in evals[1:]],
        train_accuracy_while_learning=[h["accuracy"] for h in trains], test_accuracy=history[-1]["accuracy"],
        cycles_per_step_learning=float(np.mean([h["cycles_per_step_mean"] for h in trains])),
        cycles_per_step_inference=float(np.mean([h["cycles_per_step_mean"] for h in evals])),
        samples_simulated=len(result.cycles), steps_simulated=int(sum(len(c) for c in result.cycles)),
        delays=delays, readout_weights_changed=readout_changed, readout_weights=int(net.w_out.numel()),
        wall_seconds=time.perf_counter() - started, history=history, **extra)


def _write(out_dir, metrics: dict, net, learned) -> None:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / "metrics.json.tmp"
    tmp.write_text(json.dumps(metrics, indent=2))
    tmp.replace(out / "metrics.json")
    arrays = {f"{name}_{when}": d for name in ("d_in", "d_rec")
              for when, d in (("initial", _delay_steps(net, name)), ("learned", _delay_steps(learned, name)))
              if d is not None}
    np.savez(out / "delays.npz", **arrays)
    learned.to_image().save(out / "learned.npz")
    plot_onchip_learning(metrics, {n: (arrays[f"{n}_initial"], arrays[f"{n}_learned"])
                                   for n in ("d_in", "d_rec") if f"{n}_initial" in arrays},
                         out / "learning.png")


def learn_on_core(task, config, train, out_dir=None, eval_split: str = "val", progress: bool = True) -> dict:
    """Learn ``task`` online on the RTL core from the rule's random start; return the metrics.

    The accuracies are the RTL's (its scores' argmax), which the testbench
    has checked equal to the golden rule's at every sample. With ``out_dir``:
    ``metrics.json``, ``delays.npz``, the learned network ``learned.npz`` and
    ``learning.png``.
    """
    from delrec.golden.online_fixed import FixedOnlineNetwork
    from delrec.golden.online_training import make_rule, rates_at
    from delrec.golden.tasks.base import make_loader

    started = time.perf_counter()
    spec, rates, theta = make_rule(config, train)
    net = FixedOnlineNetwork(copy.deepcopy(config), spec, rates, seed=train.seed, theta=theta)
    epochs = []
    for epoch in range(train.epochs):
        epoch_config = rates_at(config, train, epoch)
        loader = make_loader(task.train, 1, shuffle=True, seed=train.seed * 100003 + epoch)
        epochs.append((_samples(None, True, loader=loader), epoch_config.sigma,
                       make_rule(epoch_config, train)[1]))
    widest = copy.deepcopy(net)
    widest.set_sigma(max(sigma for _, sigma, _ in epochs))
    history, result = run_schedule(net, epochs, _samples(task.split(eval_split), False),
                                   _samples(task.split("test"), False),
                                   build=learning_build(net, max_reach=widest.reach), progress=progress)
    metrics = _metrics(task, net, result, history, started, eval_split,
                       dict(seed=train.seed, task_options=getattr(train, "task_options", {}),
                            online_config=config.to_dict()))
    if out_dir is not None:
        _write(out_dir, metrics, net, result.golden)
    return metrics


def learn_checkpoint_on_core(checkpoint, task=None, *, epochs: int = 1, samples: int | None = None,
                             sigma: float = CHECKPOINT_RULE["sigma"],
                             lr_delay_shift: int = CHECKPOINT_RULE["lr_delay_shift"],
                             lr_readout_shift: int = CHECKPOINT_RULE["lr_readout_shift"],
                             loss_start: int = CHECKPOINT_RULE["loss_start"],
                             target: float = CHECKPOINT_RULE["target"], readout_bias: bool = False,
                             lanes: int = 1, eval_split: str = "val", eval_samples: int | None = None,
                             out_dir=None, progress: bool = True) -> dict:
    """A network trained offline (BPTT) keeps learning on the RTL core; return the metrics.

    The checkpoint's one-hidden-layer network is quantized for a learning
    core (:data:`~delrec.golden.online_fixed.LEARNING_SPEC`: the inference
    core's widths with learning fractions), then learns online on the
    task's training split, ``samples`` per epoch (all by default), with the
    per-step rule: its axonal input delays (from zero), its recurrent delays
    and its readout. ``target`` is the per-step error's target of the
    label's readout unit in the readout's float units (1.0: the value a
    float readout of 1 quantizes to). Shifts are the core's learning-rate
    registers. The same outputs as :func:`learn_on_core`.
    """
    import torch

    from delrec.arith import LearningRates
    from delrec.golden.fixed import quantize
    from delrec.golden.online_fixed import LEARNING_SPEC, FixedOnlineNetwork, image_learning_config
    from delrec.golden.tasks.base import load_task, make_loader
    from delrec.golden.training import build_model, load_checkpoint

    started = time.perf_counter()
    state = load_checkpoint(checkpoint)
    if task is None:
        train_config = state["train_config"]
        task = load_task(train_config["task"], **train_config.get("task_options", {}))
    image = quantize(build_model(state), LEARNING_SPEC)
    config = image_learning_config(image, sigma=sigma, loss_start=loss_start, readout_bias=readout_bias)
    rates = LearningRates(lr_delay_shift=lr_delay_shift, lr_readout_shift=lr_readout_shift)
    scale = float(image.meta.get("readout_scale", image.theta))
    net = FixedOnlineNetwork.from_image(image, config, rates, target=int(round(target * scale)))
    schedule = []
    for epoch in range(epochs):
        loader = make_loader(task.train, 1, shuffle=True, seed=100003 + epoch)
        schedule.append((_samples(None, True, samples, loader=loader), sigma, rates))
    build = learning_build(net, lanes=lanes)
    with torch.no_grad():
        history, result = run_schedule(net, schedule, _samples(task.split(eval_split), False, eval_samples),
                                       _samples(task.split("test"), False, eval_samples), build=build,
                                       progress=progress)
    metrics = _metrics(task, net, result, history, started, eval_split,
                       dict(checkpoint=str(checkpoint), rule=dict(sigma=sigma, lr_delay_shift=lr_delay_shift,
                                                                  lr_readout_shift=lr_readout_shift,
                                                                  loss_start=loss_start, target=target,
                                                                  target_value=net.target,
                                                                  readout_bias=readout_bias)))
    if out_dir is not None:
        _write(out_dir, metrics, net, result.golden)
    return metrics


def plot_onchip_learning(metrics: dict, delays: dict, path: Path) -> None:
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
    ax.set(xlabel="epoch (0: before learning on chip)", ylabel="accuracy", ylim=(0, 1.02),
           title="on-chip learning (co-simulation)")
    ax.legend(fontsize="small")
    ax = axes[1]
    names = {"d_in": "input", "d_rec": "recurrent"}
    moved_total = 0
    for name, (initial, learned) in delays.items():
        moved = (learned - initial).ravel()
        moved_total += int((np.abs(moved) >= 1).sum())
        ax.hist(moved, bins=41, alpha=0.6, label=f"{names[name]} ({moved.size})")
    ax.axvline(0, color="gray", lw=0.8)
    count = sum(initial.size for initial, _ in delays.values())
    ax.set(xlabel="learned - initial delay (steps)", ylabel="delays",
           title=f"delays: {moved_total} of {count} moved >= 1 step")
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
