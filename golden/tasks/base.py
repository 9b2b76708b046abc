"""The dataset interface every task stands behind.

A task is three splits of ``(spikes [T, C], label)`` samples plus its sizes.
Loaders batch them time-major: ``x [T, B, C]`` (float 0/1) and ``y [B]``.
New tasks register a factory with :func:`register_task`; :func:`load_task`
builds one by name.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

__all__ = ["SpikeTensorDataset", "SpikeTask", "collate_time_major", "make_loader",
           "register_task", "load_task", "task_names", "data_folder"]


class SpikeTensorDataset(Dataset):
    """Samples held in memory: ``spikes [n, T, C]`` (0/1) and ``labels [n]``."""

    def __init__(self, spikes, labels):
        spikes = torch.as_tensor(np.asarray(spikes), dtype=torch.uint8)
        labels = torch.as_tensor(np.asarray(labels), dtype=torch.int64)
        if spikes.dim() != 3:
            raise ValueError(f"Spikes must have shape [n, T, C], not {tuple(spikes.shape)}")
        if labels.shape != spikes.shape[:1]:
            raise ValueError(f"Expected {spikes.shape[0]} labels, not {tuple(labels.shape)}")
        self.spikes = spikes
        self.labels = labels

    def __len__(self) -> int:
        return self.spikes.shape[0]

    def __getitem__(self, index):
        return self.spikes[index].float(), int(self.labels[index])


@dataclass
class SpikeTask:
    """Train, validation and test splits of one task, with its sizes."""

    name: str
    train: Dataset
    val: Dataset
    test: Dataset
    inputs: int
    classes: int
    steps: int
    description: str = ""

    def split(self, name: str) -> Dataset:
        if name not in ("train", "val", "test"):
            raise ValueError(f"Split must be 'train', 'val' or 'test', not {name!r}")
        return getattr(self, name)


def collate_time_major(batch):
    """``[(spikes [T, C], label), ...]`` -> ``(x [T, B, C], y [B])``."""
    spikes, labels = zip(*batch)
    return torch.stack(spikes, dim=1), torch.as_tensor(labels, dtype=torch.int64)


def make_loader(dataset: Dataset, batch_size: int, shuffle: bool = False, seed: int = 0,
                sampler=None, drop_last: bool = False) -> DataLoader:
    """A time-major loader; shuffling is seeded (and left to ``sampler`` if given)."""
    if batch_size < 1:
        raise ValueError(f"Batch size must be positive, not {batch_size!r}")
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle and sampler is None,
                      sampler=sampler, generator=generator, collate_fn=collate_time_major,
                      drop_last=drop_last)


def data_folder(task: str, data, holds: str, source: str) -> Path:
    """The data folder of a real-data task, or an error naming what it must hold and where
    the data is published."""
    if data is None:
        raise ValueError(f"Task {task!r} needs the option data=<folder holding {holds}>; "
                         f"the files are {source}")
    folder = Path(data).expanduser()
    if not folder.is_dir():
        raise FileNotFoundError(f"Data folder {folder} for task {task!r} does not exist; it should "
                                f"hold {holds}; the files are {source}")
    return folder


_TASKS: dict[str, Callable[..., SpikeTask]] = {}


def register_task(name: str):
    """Decorator: register ``factory(**options) -> SpikeTask`` under ``name``."""
    def wrap(factory):
        _TASKS[name] = factory
        return factory
    return wrap


def _register_builtin() -> None:
    from . import digits, mnist, shd, synthetic  # noqa: F401  (their decorators register them)
    from . import spoken  # noqa: F401


def task_names() -> list[str]:
    _register_builtin()
    return sorted(_TASKS)


def load_task(name: str, **options) -> SpikeTask:
    """Build the task ``name``; options the task does not know are an error."""
    _register_builtin()
    if name not in _TASKS:
        raise ValueError(f"Unknown task {name!r}; known tasks: {', '.join(task_names())}")
    factory = _TASKS[name]
    params = inspect.signature(factory).parameters
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        unknown = sorted(set(options) - set(params))
        if unknown:
            raise ValueError(f"Task {name!r} has no option(s) {unknown}; its options are "
                             f"{', '.join(params)}")
    return factory(**options)
