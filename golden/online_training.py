"""Training with the online three-factor rule: epochs, checkpoints, metrics.

``delrec train --learning three-factor`` runs :func:`train_online`. Every
batch goes forward once; the rule of :mod:`delrec.golden.online` updates the
weights and delays during (``update_every``) or at the end of each sample,
with no backward pass. Checkpoints, ``metrics.json`` and ``run.png`` follow the
BPTT trainer's layout, so the rest of the tool chain reads both.
"""

from __future__ import annotations

import copy
import json
import sys
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch
from tqdm.auto import tqdm

from delrec.arith import CoreSpec, LearningRates

from .online import OnlineConfig, OnlineNetwork, trace_memory
from .online_fixed import DEFAULT_THETA, ONLINE_SPEC, FixedOnlineNetwork
from .tasks.base import SpikeTask, load_task, make_loader
from .training import save_checkpoint_atomic, split_settings

__all__ = ["OnlineTrainConfig", "ONLINE_TASK_DEFAULTS", "make_online_configs", "train_online",
           "applied_rates", "evaluate_online", "load_online_checkpoint", "ONLINE_CHECKPOINT_FORMAT",
           "make_rule", "FIXED_SETTINGS"]

ONLINE_CHECKPOINT_FORMAT = "delrec-online-checkpoint-v1"

# Per-task defaults of the online rule (any OnlineConfig or OnlineTrainConfig field).
ONLINE_TASK_DEFAULTS = {
    "delayed-xor": dict(hidden=64, epochs=8, batch_size=32, input_delays="synaptic",
                        delay_init=[0.0, 40.0], tau=2.0, signal="sample", lr_weight=0.5,
                        lr_delay=100.0, lr_readout=0.05, readout_bias=False, sigma=4.0,
                        sigma_final=1.0),
    "ps-digits": dict(hidden=128, epochs=20, batch_size=32, input_delays="axonal", tau=2.0,
                      signal="sample", lr_weight=0.5, lr_delay=100.0, lr_readout=0.05,
                      readout_bias=False, sigma=4.0, sigma_final=1.0),
    # measured on the mel standard split (README): 97.5 % over 3 seeds after 20 epochs. A
    # readout started at gain 0.08 (about one 8-bit step of the forward weights) gives the
    # fixed-point rule a back-projected signal from the start; 0.02 (a fifth of a step) did not.
    "spoken-digits": dict(hidden=128, epochs=20, batch_size=32, input_delays="axonal",
                          delay_init=[0.0, 30.0], tau=2.0, signal="sample", input_gain=0.5,
                          readout_gain=0.08, lr_weight=0.1, lr_delay=200.0, lr_readout=4e-4,
                          lr_final=0.1, readout_bias=False, sigma=4.0, sigma_final=1.0),
}


#: What ``spec`` may set: the fields of :class:`~delrec.arith.CoreSpec` and of
#: :class:`~delrec.arith.LearningRates`, and ``theta`` (the weights' scale).
FIXED_SETTINGS = tuple(sorted({f.name for f in fields(CoreSpec)} | {f.name for f in fields(LearningRates)}
                              | {"theta"}))


@dataclass
class OnlineTrainConfig:
    """Everything an online run needs besides the network (stored in every checkpoint)."""

    task: str = "delayed-xor"
    task_options: dict = field(default_factory=dict)
    epochs: int = 20
    batch_size: int = 32
    seed: int = 0
    threads: int | None = None
    sigma_final: float | None = None
    lr_final: float = 1.0
    arithmetic: str = "float"
    spec: dict = field(default_factory=dict)
    chip_rates: bool = False

    def __post_init__(self):
        if not isinstance(self.chip_rates, bool):
            raise ValueError(f"chip_rates must be true or false, not {self.chip_rates!r}")
        if not 0 < self.lr_final <= 1:
            raise ValueError(f"Final learning-rate fraction must be in (0, 1], not {self.lr_final!r}")
        if self.arithmetic not in ("float", "fixed"):
            raise ValueError(f"Arithmetic must be 'float' or 'fixed', not {self.arithmetic!r}")
        if self.epochs < 1:
            raise ValueError(f"Number of epochs must be positive, not {self.epochs!r}")
        if self.batch_size < 1:
            raise ValueError(f"Batch size must be positive, not {self.batch_size!r}")
        if not isinstance(self.spec, dict):
            raise ValueError(f"spec must be a JSON object of fixed-point settings (e.g. "
                             f"spec='{{\"feedback_frac_bits\": 4}}'), not {self.spec!r}")
        unknown = sorted(set(self.spec) - set(FIXED_SETTINGS))
        if unknown:
            raise ValueError(f"Unknown fixed-point setting(s) {unknown} in spec; the settings are "
                             f"{list(FIXED_SETTINGS)}")

    @classmethod
    def from_dict(cls, data: dict) -> "OnlineTrainConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def make_online_configs(task: SpikeTask, overrides: dict) -> tuple[OnlineConfig, OnlineTrainConfig]:
    """Network and training configuration: defaults, then the task's, then ``overrides``.

    A None in ``overrides`` is a value (``input_delays=None``: no delays), not "unset".
    ``spec`` (the fixed-point arithmetic's settings) is dropped from float runs.
    """
    values = dict(ONLINE_TASK_DEFAULTS.get(task.name, {}))
    values.update(overrides)
    if isinstance(values.get("hidden"), (list, tuple)):
        if len(values["hidden"]) != 1:
            raise ValueError(f"The online rule trains one hidden layer, not {values['hidden']!r}")
        values["hidden"] = values["hidden"][0]
    net, train = split_settings(task, values, OnlineConfig, OnlineTrainConfig, " for the online rule")
    if train.arithmetic == "float" and not train.chip_rates:
        # spec sets the fixed-point arithmetic: a float run has none, so a comparison that sets
        # it for its fixed-point variants records (and reuses) the same float runs as one without
        train.spec = {}
    if train.arithmetic == "fixed":
        # a fixed-point run always learns at the chip's rates: the same run with or without
        train.chip_rates = False
    return net, train


def rates_at(config: OnlineConfig, train: OnlineTrainConfig, epoch: int) -> OnlineConfig:
    """``config`` with its learning rates for ``epoch``: geometric decay to ``lr_final`` of them."""
    out = copy.deepcopy(config)
    if train.epochs > 1 and train.lr_final != 1:
        factor = train.lr_final ** (epoch / (train.epochs - 1))
        out.lr_weight, out.lr_delay, out.lr_readout = (config.lr_weight * factor,
                                                      config.lr_delay * factor,
                                                      config.lr_readout * factor)
    out.sigma = sigma_at(config, train, epoch)
    return out


def sigma_at(config: OnlineConfig, train: OnlineTrainConfig, epoch: int) -> float:
    """Width of the Gaussian surrogate in ``epoch``: geometric from ``sigma`` to ``sigma_final``."""
    if train.sigma_final is None or train.epochs == 1:
        return config.sigma
    ratio = train.sigma_final / config.sigma
    return config.sigma * ratio ** (epoch / (train.epochs - 1))


@torch.no_grad()
def evaluate_online(net: OnlineNetwork, loader) -> dict:
    """Accuracy, loss and spikes per neuron per step (integer delays, no learning)."""
    correct = total = 0
    loss = spikes = 0.0
    neuron_steps = 0
    for x, y in loader:
        r = net.run(x, y, record=True)
        correct += int((r["scores"].argmax(-1) == y).sum())
        total += y.numel()
        loss += float(r["loss"]) * y.numel()
        spikes += float(r["spikes"].sum())
        neuron_steps += r["spikes"].numel()
    if total == 0:
        raise ValueError("Cannot evaluate on an empty split")
    return {"accuracy": correct / total, "loss": loss / total,
            "spikes_per_neuron_per_step": spikes / neuron_steps, "samples": total}


def load_online_checkpoint(path) -> dict:
    """Load and validate an online-rule checkpoint; errors name the file and the problem."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise ValueError(f"Checkpoint {path} is not a readable torch file: {exc}") from exc
    if not isinstance(state, dict) or state.get("format") != ONLINE_CHECKPOINT_FORMAT:
        found = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise ValueError(f"Checkpoint {path} has format {found!r}, expected "
                         f"{ONLINE_CHECKPOINT_FORMAT!r}")
    return state


def make_rule(config: OnlineConfig, train: OnlineTrainConfig) -> tuple[CoreSpec, LearningRates, int]:
    """The run's fixed point ``(spec, rates, theta)`` from ``train.spec``'s entries.

    The spec is :data:`~delrec.golden.online_fixed.ONLINE_SPEC` with the
    entries that name its fields; the learning-rate shifts are derived from
    the float rates (:meth:`FixedOnlineNetwork.equivalent_shifts`) where not
    given; ``theta`` defaults to :data:`~delrec.golden.online_fixed.DEFAULT_THETA`.
    """
    spec_fields = {f.name for f in fields(CoreSpec)}
    spec = CoreSpec(**dict(ONLINE_SPEC.to_dict(), **{k: v for k, v in train.spec.items()
                                                     if k in spec_fields}))
    theta = int(train.spec.get("theta", DEFAULT_THETA))
    shifts = FixedOnlineNetwork.equivalent_shifts(config, spec, train.batch_size, theta)
    given = {f.name: train.spec[f.name] for f in fields(LearningRates) if f.name in train.spec}
    rates = LearningRates(**dict(shifts, **given))
    return spec, rates, theta


def _named(net) -> dict:
    if isinstance(net, FixedOnlineNetwork):
        return net.parameters()
    return dict(net.named_parameters())


def applied_rates(epoch_config: OnlineConfig, train: OnlineTrainConfig) -> dict:
    """The learning rates a run applies in an epoch, in the float rule's units.

    Float runs apply ``epoch_config``'s rates, or with ``train.chip_rates``
    those the fixed-point rule's power-of-two shifts give (the same rates as
    a fixed-point run of this configuration, so that the two differ in
    arithmetic only). Fixed-point runs apply the chip's rates.
    """
    rates = {k: getattr(epoch_config, k) for k in ("lr_weight", "lr_delay", "lr_readout")}
    if train.arithmetic == "fixed" or train.chip_rates:
        spec, rule_rates, theta = make_rule(epoch_config, train)
        factors = FixedOnlineNetwork.chip_rate_factors(epoch_config, spec, rule_rates, train.batch_size,
                                                       theta)
        rates = {k: v * factors[k] for k, v in rates.items()}
    return rates


def _set_epoch(net, epoch_config: OnlineConfig, train: OnlineTrainConfig) -> None:
    """This epoch's surrogate width and learning rates (shifts for the fixed-point rule)."""
    if isinstance(net, FixedOnlineNetwork):
        net.set_sigma(epoch_config.sigma)
        net.rates = make_rule(epoch_config, train)[1]
    else:
        net.config.sigma = epoch_config.sigma
        for name, rate in applied_rates(epoch_config, train).items():
            setattr(net.config, name, rate)


def _delay_report(net) -> dict:
    report = {}
    for name in ("d_in", "d_rec"):
        d = getattr(net, name)
        if d is None:
            continue
        if isinstance(net, FixedOnlineNetwork):
            d = d.to(torch.float64) / (1 << net.spec.delay_frac_bits)
        integer = torch.floor(d + 0.5).to(torch.int64).flatten()
        counts = torch.bincount(integer)
        report[name] = {"shape": list(d.shape), "mean": float(d.mean()), "max": float(d.max()),
                        "histogram": {str(i): int(c) for i, c in enumerate(counts.tolist()) if c}}
    return report


def _plot(metrics: dict, net: OnlineNetwork, initial: dict, path: Path) -> None:
    from .plots import plot_accuracy, plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    plot_accuracy(axes[0], metrics, "train (while learning)", "val")
    ax = axes[1]
    shown = False
    for name in ("d_in", "d_rec"):
        d = getattr(net, name)
        if d is not None:
            scale = (1 << net.spec.delay_frac_bits) if isinstance(net, FixedOnlineNetwork) else 1
            ax.hist(initial[name].flatten().double().numpy() / scale, bins=40, alpha=0.4,
                    label=f"{name} initial")
            ax.hist(d.flatten().double().numpy() / scale, bins=40, alpha=0.6, label=f"{name} learned")
            shown = True
    if shown:
        ax.set(xlabel="delay (steps)", ylabel="count", title="delays")
        ax.legend(fontsize="small")
    else:
        ax.text(0.5, 0.5, "no delays in this model", ha="center", va="center")
        ax.set_axis_off()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def train_online(config: OnlineConfig, train: OnlineTrainConfig, out_dir, resume: bool = False,
                 progress: bool = True, task: SpikeTask | None = None) -> dict:
    """Learn online for ``train.epochs`` epochs; checkpoint every epoch; return the metrics."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if train.threads:
        torch.set_num_threads(train.threads)
    task = task or load_task(train.task, **train.task_options)
    if (config.inputs, config.classes) != (task.inputs, task.classes):
        raise ValueError(f"Network has {config.inputs} inputs and {config.classes} classes but "
                         f"task {task.name!r} has {task.inputs} and {task.classes}")
    torch.manual_seed(train.seed)
    fixed = train.arithmetic == "fixed"
    if fixed:
        spec, rates, theta = make_rule(config, train)
        net = FixedOnlineNetwork(copy.deepcopy(config), spec, rates, seed=train.seed, theta=theta)
    else:
        net = OnlineNetwork(copy.deepcopy(config), seed=train.seed)  # its sigma follows the schedule
    initial = {n: p.detach().clone() for n, p in _named(net).items()}
    eval_loaders = {split: make_loader(task.split(split), 256) for split in ("train", "val", "test")}
    history, start, best = [], 0, {"val_accuracy": -1.0, "epoch": -1, "model": None}
    ckpt = out_dir / "checkpoint.pt"
    if resume:
        state = load_online_checkpoint(ckpt)
        if state["config"] != config.to_dict() or \
                OnlineTrainConfig.from_dict(state["train_config"]) != train:
            raise ValueError(f"Cannot resume {ckpt}: its configuration differs from this run's")
        net.load_state_dict(state["model"])
        initial, history, best = state["initial"], state["history"], state["best"]
        start = state["epoch"] + 1
    steps = train.epochs * -(-len(task.train) // train.batch_size)
    bar = tqdm(total=steps, initial=start * -(-len(task.train) // train.batch_size),
               disable=not progress, file=sys.stderr, desc=f"{train.task}/three-factor",
               unit="batch", dynamic_ncols=True)
    for epoch in range(start, train.epochs):
        epoch_config = rates_at(config, train, epoch)
        _set_epoch(net, epoch_config, train)
        if hasattr(task.train, "set_epoch"):
            task.train.set_epoch(epoch)
        loader = make_loader(task.train, train.batch_size, shuffle=True, seed=train.seed * 100003 + epoch)
        started = time.perf_counter()
        correct = seen = 0
        loss = 0.0
        for x, y in loader:
            r = net.run(x, y, learn=True)
            correct += int((r["scores"].argmax(-1) == y).sum())
            seen += y.numel()
            loss += float(r["loss"]) * y.numel()
            bar.update()
            bar.set_postfix(loss=f"{loss / seen:.3f}", acc=f"{correct / seen:.3f}")
        val = evaluate_online(net, eval_loaders["val"])  # hard forward: sigma plays no part
        record = {"epoch": epoch, "sigma": sigma_at(config, train, epoch),
                  "learning_rates": applied_rates(epoch_config, train),
                  "train_loss": loss / seen, "train_accuracy": correct / seen,
                  "val_accuracy": val["accuracy"], "val_loss": val["loss"],
                  "seconds": time.perf_counter() - started}
        history.append(record)
        if val["accuracy"] > best["val_accuracy"]:
            best = {"val_accuracy": val["accuracy"], "epoch": epoch,
                    "model": copy.deepcopy(net.state_dict())}
        bar.write(f"epoch {epoch + 1}/{train.epochs}: loss {record['train_loss']:.3f} "
                  f"train {record['train_accuracy']:.3f} val {val['accuracy']:.3f}", file=sys.stderr)
        save_checkpoint_atomic({"format": ONLINE_CHECKPOINT_FORMAT, "epoch": epoch,
                                "config": config.to_dict(), "train_config": asdict(train),
                                "model": net.state_dict(), "initial": initial,
                                "history": history, "best": best}, ckpt)
    bar.close()
    final = {split: evaluate_online(net, loader) for split, loader in eval_loaders.items()}
    final_state = copy.deepcopy(net.state_dict())
    net.load_state_dict(best["model"])
    best_test = evaluate_online(net, eval_loaders["test"])
    net.load_state_dict(final_state)
    metrics = {
        "task": train.task, "model": "three-factor", "seed": train.seed,
        "arithmetic": train.arithmetic,
        "spec": dict(net.spec.to_dict(), **net.rates.to_dict(), theta=net.theta) if fixed else None,
        "parameters": sum(p.numel() for p in _named(net).values()),
        "train_accuracy": final["train"]["accuracy"], "val_accuracy": final["val"]["accuracy"],
        "test_accuracy": final["test"]["accuracy"], "best_epoch": best["epoch"],
        "best_val_accuracy": best["val_accuracy"], "best_test_accuracy": best_test["accuracy"],
        "spikes_per_neuron_per_step": final["test"]["spikes_per_neuron_per_step"],
        "learning_state": trace_memory(config),
        "delays": _delay_report(net), "history": history,
        "online_config": config.to_dict(), "train_config": asdict(train),
    }
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    _plot(metrics, net, initial, out_dir / "run.png")
    return metrics
