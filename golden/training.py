"""Training and evaluation of DelRec networks with surrogate-gradient BPTT.

The optimizer recipe of the DelRec paper: AdamW on weights (weight decay on
matrices only) with a one-cycle learning-rate schedule, a separate AdamW with
its own learning rate and a cosine schedule on delays (and learned widths),
delays clamped to ``d >= 0`` after every step, and the spread ``sigma`` of
every delay lowered each epoch by :func:`~delrec.golden.spread.sigma_schedule`.
Validation and test run in evaluation mode, i.e. with integer delays.

Runs on one process, or data-parallel over several with ``torchrun``
(``torch.distributed``, gloo on CPU, NCCL on GPUs): each rank sees its share
of every batch and gradients are averaged, so no code changes to scale out.
"""

from __future__ import annotations

import copy
import json
import os
import random
import sys
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.utils.data.distributed import DistributedSampler
from tqdm.auto import tqdm

from .network import DelayNetwork, ModelConfig
from .plots import plot_run
from .spread import Delays, sigma_schedule
from .tasks.base import SpikeTask, load_task, make_loader

__all__ = ["TrainConfig", "TASK_DEFAULTS", "train", "evaluate", "load_checkpoint",
           "save_checkpoint_atomic", "loss_fn", "make_configs", "split_settings"]

CHECKPOINT_FORMAT = "delrec-checkpoint-v1"

# Per-task defaults: model sizes, neuron settings and training lengths that
# reach each task's target on two CPU cores. Any field of ModelConfig or
# TrainConfig may appear; explicit options override them.
TASK_DEFAULTS = {
    "delayed-xor": dict(hidden=[64], epochs=30, batch_size=64, delay_init=[0.0, 45.0]),
    # The neuron settings of the paper's PS-MNIST configuration.
    "ps-digits": dict(hidden=[128], epochs=60, batch_size=64, delay_init=[0.0, 20.0], tau=2.0,
                      reset="soft", surrogate="triangle", surrogate_scale=1.0, detach_reset=False),
    # Two layers (recurrent delays in the second), batch norm and dropout as the
    # paper's SHD configuration, smaller: <= 0.2 M parameters.
    "spoken-digits": dict(hidden=[128, 128], epochs=40, batch_size=64, delay_init=[0.0, 30.0],
                          batch_norm=True, dropout=0.3),
}


@dataclass
class TrainConfig:
    """Everything a run needs besides the model (stored in every checkpoint)."""

    task: str = "delayed-xor"
    task_options: dict = field(default_factory=dict)
    epochs: int = 30
    batch_size: int = 64
    lr: float = 5e-3
    lr_delay: float = 5e-2
    weight_decay: float = 1e-5
    sigma_decay: float = 0.95
    seed: int = 0
    threads: int | None = None

    def __post_init__(self):
        if self.epochs < 1:
            raise ValueError(f"Number of epochs must be positive, not {self.epochs!r}")
        if self.batch_size < 1:
            raise ValueError(f"Batch size must be positive, not {self.batch_size!r}")
        if not (self.lr > 0 and self.lr_delay >= 0):
            raise ValueError(f"Learning rates must be positive, not lr={self.lr!r}, "
                             f"lr_delay={self.lr_delay!r}")

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def make_configs(task: SpikeTask, overrides: dict) -> tuple[ModelConfig, TrainConfig]:
    """Model and training configuration for ``task``: dataclass defaults, then the
    task's :data:`TASK_DEFAULTS`, then ``overrides`` (entries that are None are ignored)."""
    values = dict(TASK_DEFAULTS.get(task.name, {}))
    values.update({k: v for k, v in overrides.items() if v is not None})
    return split_settings(task, values, ModelConfig, TrainConfig)


def split_settings(task: SpikeTask, values: dict, model_cls, train_cls, what: str = ""):
    """Build ``(model_cls, train_cls)`` from one dict of settings; unknown names are an error.

    The model gets the task's input and class counts, the training config its name.
    """
    model_names = {f.name for f in fields(model_cls)}
    train_names = {f.name for f in fields(train_cls)}
    unknown = set(values) - model_names - train_names
    if unknown:
        raise ValueError(f"Unknown configuration entries {sorted(unknown)}{what}")
    model = {k: v for k, v in values.items() if k in model_names}
    model.update(inputs=task.inputs, classes=task.classes)
    train = {k: v for k, v in values.items() if k in train_names}
    train["task"] = task.name
    return model_cls(**model), train_cls(**train)


def loss_fn(model: DelayNetwork, trace: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(model.readout.scores(trace), labels)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _unwrap(model):
    return model.module if hasattr(model, "module") else model


@torch.no_grad()
def evaluate(model: DelayNetwork, loader) -> dict:
    """Accuracy, loss and spikes per neuron per step on ``loader`` in evaluation mode."""
    net = _unwrap(model)
    was_training = net.training
    net.eval()
    correct = total = 0
    loss_sum = 0.0
    spikes = 0.0
    neuron_steps = 0
    hidden = sum(net.config.hidden)
    for x, y in loader:
        trace = net(x)
        scores = net.readout.scores(trace)
        loss_sum += float(F.cross_entropy(scores, y, reduction="sum"))
        correct += int((scores.argmax(-1) == y).sum())
        total += y.numel()
        spikes += float(sum(net.spike_counts))
        neuron_steps += x.shape[0] * x.shape[1] * hidden
    net.train(was_training)
    if total == 0:
        raise ValueError("Cannot evaluate on an empty split")
    return {"accuracy": correct / total, "loss": loss_sum / total,
            "spikes_per_neuron_per_step": spikes / neuron_steps, "samples": total}


def save_checkpoint_atomic(state: dict, path: Path) -> None:
    """Write ``state`` to ``path`` so that a crash never leaves a partial file."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load_checkpoint(path) -> dict:
    """Load and validate a training checkpoint; errors name the file and the problem."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # pickle and zip errors have many types
        raise ValueError(f"Checkpoint {path} is not a readable torch file: {exc}") from exc
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        found = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise ValueError(f"Checkpoint {path} has format {found!r}, expected {CHECKPOINT_FORMAT!r}")
    for key in ("model_config", "train_config", "model", "epoch"):
        if key not in state:
            raise ValueError(f"Checkpoint {path} lacks the entry {key!r}")
    return state


def build_model(state: dict) -> DelayNetwork:
    """Rebuild the network stored in a checkpoint (strict: every tensor must match)."""
    model = DelayNetwork(ModelConfig.from_dict(state["model_config"]))
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as exc:
        raise ValueError(f"Checkpoint weights do not match its model configuration: {exc}") from exc
    return model


def _delay_report(net: DelayNetwork) -> dict:
    report = {}
    for name, module in net.named_modules():
        if not isinstance(module, Delays):
            continue
        integer = module.integer().flatten().to(torch.int64)
        counts = torch.bincount(integer)
        report[name] = {
            "shape": list(module.delay.shape),
            "mean": float(module.delay.detach().mean()),
            "max": float(module.delay.detach().max()),
            "histogram": {str(i): int(c) for i, c in enumerate(counts.tolist()) if c},
            "schedule_length_eval": int(integer.max()) + module.offset,
        }
    return report


def _distributed():
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend)
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def train(model_config: ModelConfig, config: TrainConfig, out_dir, resume: bool = False,
          progress: bool = True, task: SpikeTask | None = None) -> dict:
    """Train, checkpoint every epoch into ``out_dir``, write ``metrics.json``; return the metrics.

    With ``resume`` the run continues from ``out_dir/checkpoint.pt``.
    """
    out_dir = Path(out_dir)
    rank, world = _distributed()
    if config.threads:
        torch.set_num_threads(config.threads)
    if config.batch_size % world:
        raise ValueError(f"Batch size {config.batch_size} must be divisible by the number of "
                         f"processes {world}")
    if rank == 0:
        out_dir.mkdir(parents=True, exist_ok=True)
    task = task or load_task(config.task, **config.task_options)
    if (model_config.inputs, model_config.classes) != (task.inputs, task.classes):
        raise ValueError(f"Model has {model_config.inputs} inputs and {model_config.classes} "
                         f"classes but task {task.name!r} has {task.inputs} and {task.classes}")
    seed_everything(config.seed)
    model = DelayNetwork(model_config)
    weights, no_decay, delays = model.parameter_groups()
    opt_w = torch.optim.AdamW([{"params": weights, "weight_decay": config.weight_decay},
                               {"params": no_decay, "weight_decay": 0.0}], lr=config.lr)
    opt_d = torch.optim.AdamW(delays, lr=config.lr_delay, weight_decay=0.0) if delays else None

    # One seeded shuffle per epoch (also on one process), so that a resumed run
    # sees the same batches as an uninterrupted one.
    sampler = DistributedSampler(task.train, num_replicas=world, rank=rank, shuffle=True,
                                 seed=config.seed, drop_last=False)
    local_batch = config.batch_size // world
    train_loader = make_loader(task.train, local_batch, shuffle=True, seed=config.seed, sampler=sampler)
    eval_loaders = {split: make_loader(task.split(split), 256) for split in ("train", "val", "test")}
    steps_per_epoch = len(train_loader)
    total_steps = config.epochs * steps_per_epoch
    sched_w = torch.optim.lr_scheduler.OneCycleLR(opt_w, max_lr=config.lr, total_steps=total_steps)
    sched_d = (torch.optim.lr_scheduler.CosineAnnealingLR(opt_d, T_max=total_steps)
               if opt_d else None)

    history, start_epoch, best = [], 0, {"val_accuracy": -1.0, "epoch": -1, "model": None}
    ckpt_path = out_dir / "checkpoint.pt"
    if resume:
        state = load_checkpoint(ckpt_path)
        if state["model_config"] != model_config.to_dict() or \
                TrainConfig.from_dict(state["train_config"]) != config:
            raise ValueError(f"Cannot resume {ckpt_path}: its configuration differs from this run's")
        model.load_state_dict(state["model"])
        opt_w.load_state_dict(state["optimizer_weights"])
        sched_w.load_state_dict(state["scheduler_weights"])
        if opt_d:
            opt_d.load_state_dict(state["optimizer_delays"])
            sched_d.load_state_dict(state["scheduler_delays"])
        history, best = state["history"], state["best"]
        start_epoch = state["epoch"] + 1
        torch.set_rng_state(state["rng"])

    net = model
    if world > 1:
        net = torch.nn.parallel.DistributedDataParallel(model)

    bar = tqdm(total=total_steps, initial=start_epoch * steps_per_epoch, disable=not progress or rank != 0,
               file=sys.stderr,
               desc=f"{config.task}/{model_config.kind}", unit="batch", dynamic_ncols=True)
    for epoch in range(start_epoch, config.epochs):
        sigma = sigma_schedule(model_config.sigma0, epoch, config.epochs, config.sigma_decay)
        model.set_sigma(sigma)
        sampler.set_epoch(epoch)
        if hasattr(task.train, "set_epoch"):  # augmentations redrawn per epoch, resumable
            task.train.set_epoch(epoch)
        model.train()
        started = time.perf_counter()
        loss_sum = correct = seen = 0
        for x, y in train_loader:
            trace = net(x)
            loss = loss_fn(model, trace, y)
            opt_w.zero_grad(set_to_none=True)
            if opt_d:
                opt_d.zero_grad(set_to_none=True)
            loss.backward()
            opt_w.step()
            sched_w.step()
            if opt_d:
                opt_d.step()
                sched_d.step()
            model.clamp_delays()
            with torch.no_grad():
                loss_sum += float(loss) * y.numel()
                correct += int((model.readout.scores(trace).argmax(-1) == y).sum())
                seen += y.numel()
            bar.update()
            bar.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{correct / seen:.3f}", sigma=f"{sigma:.2f}")
        val = evaluate(model, eval_loaders["val"])
        record = {"epoch": epoch, "sigma": sigma, "train_loss": loss_sum / seen,
                  "train_accuracy": correct / seen, "val_accuracy": val["accuracy"],
                  "val_loss": val["loss"], "lr": sched_w.get_last_lr()[0],
                  "seconds": time.perf_counter() - started}
        history.append(record)
        if val["accuracy"] > best["val_accuracy"]:
            best = {"val_accuracy": val["accuracy"], "epoch": epoch,
                    "model": copy.deepcopy(model.state_dict())}
        if rank == 0:
            bar.write(f"epoch {epoch + 1}/{config.epochs}: loss {record['train_loss']:.3f} "
                      f"train {record['train_accuracy']:.3f} val {val['accuracy']:.3f} sigma {sigma:.3f}",
                      file=sys.stderr)
            save_checkpoint_atomic({
                "format": CHECKPOINT_FORMAT, "epoch": epoch,
                "model_config": model_config.to_dict(), "train_config": asdict(config),
                "model": model.state_dict(), "optimizer_weights": opt_w.state_dict(),
                "scheduler_weights": sched_w.state_dict(),
                "optimizer_delays": opt_d.state_dict() if opt_d else None,
                "scheduler_delays": sched_d.state_dict() if sched_d else None,
                "history": history, "best": best, "rng": torch.get_rng_state(),
            }, ckpt_path)
    bar.close()

    metrics = None
    if rank == 0:
        final = {split: evaluate(model, loader) for split, loader in eval_loaders.items()}
        delays = _delay_report(model)  # of the final model, like the other figures and the plot
        final_state = copy.deepcopy(model.state_dict())
        model.load_state_dict(best["model"])
        best_test = evaluate(model, eval_loaders["test"])
        model.load_state_dict(final_state)
        metrics = {
            "task": config.task, "model": model_config.kind, "seed": config.seed,
            "processes": world,
            "parameters": sum(p.numel() for p in model.parameters()),
            "train_accuracy": final["train"]["accuracy"], "val_accuracy": final["val"]["accuracy"],
            "test_accuracy": final["test"]["accuracy"],
            "best_epoch": best["epoch"], "best_val_accuracy": best["val_accuracy"],
            "best_test_accuracy": best_test["accuracy"],
            "spikes_per_neuron_per_step": final["test"]["spikes_per_neuron_per_step"],
            "delays": delays,
            "history": history,
            "model_config": model_config.to_dict(), "train_config": asdict(config),
        }
        (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
        plot_run(metrics, model, out_dir / "run.png")
    if world > 1:
        dist.barrier()
    return metrics
