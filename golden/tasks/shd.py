"""``shd`` and ``ssc``: the Spiking Heidelberg Digits and Spiking Speech Commands.

Cramer, Stradmann, Schemmel and Zenke (2020), "The Heidelberg spiking data
sets for the systematic evaluation of spiking neural networks", published at
https://zenkelab.org/datasets/ as HDF5 files (``shd_train.h5``,
``shd_test.h5``; ``ssc_train.h5``, ``ssc_valid.h5``, ``ssc_test.h5``; they
are distributed gzipped: gunzip them first). Each file holds
``spikes/times`` (one float array of seconds per sample),
``spikes/units`` (one int array per sample, units 0..699 of a cochlea model)
and ``labels`` (SHD: 20 classes, digits 0-9 in English and German; SSC: 35
words).

Samples are binned as DelRec does: ``bin_ms`` = 10 ms bins and ``pool`` = 5
consecutive units summed into one channel (700 -> 140 channels), spike
counts per bin (see :func:`~.events.bin_events`). DelRec pads each batch to
its longest sample; a task here has one length for all samples, by default
a 1.4 s window (``steps = ceil(1400 / bin_ms)``, 140 steps of 10 ms): SHD
recordings last at most about 1.4 s, and 1.4 s is the window DelRec uses
for SSC. Events after the window are dropped with a warning that counts
them; pass ``steps`` to choose another window.

SHD has no validation file: ``val_fraction`` of the training file (0.2, as
DelRec) is split off with a permutation seeded by ``seed``. SSC uses its
validation file. The augmentations of DelRec's SHD recipe (per-channel time
shift, same-class blend) and a shift of the channel axis are options; they
apply to the training split only, drawn afresh at every read (see
:class:`~.events.AugmentedSpikes`).
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np

from .base import SpikeTask, SpikeTensorDataset, data_folder, register_task
from .events import (AugmentedSpikes, check_augmentation, check_binning, count_events,
                     time_bins)

__all__ = ["shd", "ssc", "read_spike_file", "DATASET_URL"]

DATASET_URL = "https://zenkelab.org/datasets/"
NUM_UNITS = 700
WINDOW_S = 1.4
_FILES = {"shd": {"train": "shd_train.h5", "test": "shd_test.h5"},
          "ssc": {"train": "ssc_train.h5", "val": "ssc_valid.h5", "test": "ssc_test.h5"}}
_CLASSES = {"shd": 20, "ssc": 35}
_KEYS = ("spikes/times", "spikes/units", "labels")


def _locate(task: str, data) -> dict[str, Path]:
    files = _FILES[task]
    names = ", ".join(files.values())
    where = f"published by Cramer et al. (2020) at {DATASET_URL} (gunzip the .h5.gz downloads)"
    folder = data_folder(task, data, names, where)
    paths = {split: folder / name for split, name in files.items()}
    missing = [p.name for p in paths.values() if not p.is_file()]
    if missing:
        zipped = [m for m in missing if (folder / (m + ".gz")).is_file()]
        hint = f" ({', '.join(m + '.gz' for m in zipped)} found: gunzip it)" if zipped else ""
        raise FileNotFoundError(f"Data folder {folder} for task {task!r} lacks "
                                f"{', '.join(missing)}{hint}; the files are {where}")
    return paths


def read_spike_file(path, classes: int, num_units: int = NUM_UNITS):
    """Read and validate one SHD/SSC file.

    Returns
    -------
    times : list of float64 arrays
    units : list of int64 arrays
    labels : numpy.ndarray of int64

    Raises
    ------
    ValueError
        Naming the file and what is wrong: not HDF5, a missing dataset,
        datasets of different lengths, a sample with more times than units,
        non-finite or negative times, units outside ``0..num_units-1``,
        labels outside ``0..classes-1``.
    """
    import h5py

    path = Path(path)
    try:
        handle = h5py.File(path, "r")
    except OSError as err:
        raise ValueError(f"{path} is not a readable HDF5 file: {err}") from None
    with handle:
        missing = [key for key in _KEYS if key not in handle]
        if missing:
            raise ValueError(f"{path} lacks the dataset(s) {', '.join(missing)} "
                             f"(an SHD/SSC file holds {', '.join(_KEYS)})")
        data = {}
        for key in _KEYS:
            item = handle[key]
            if not isinstance(item, h5py.Dataset) or item.ndim != 1:
                raise ValueError(f"{path}: {key} must be a 1-D dataset, not "
                                 f"{getattr(item, 'shape', type(item).__name__)}")
            data[key] = item[()]
    times, units, labels = (data[key] for key in _KEYS)
    sizes = {key: len(data[key]) for key in _KEYS}
    if len(set(sizes.values())) > 1:
        raise ValueError(f"{path}: datasets differ in length: "
                         + ", ".join(f"{key} has {n}" for key, n in sizes.items()))
    for key in ("spikes/times", "spikes/units"):
        if data[key].dtype != object:
            raise ValueError(f"{path}: {key} must be variable-length (one array per sample), "
                             f"not dtype {data[key].dtype}")
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{path}: labels must be integers, not dtype {labels.dtype}")
    labels = labels.astype(np.int64)
    bad = np.flatnonzero((labels < 0) | (labels >= classes))
    if bad.size:
        raise ValueError(f"{path}: sample {bad[0]} has label {labels[bad[0]]}, outside "
                         f"0..{classes - 1} ({classes} classes)")
    times = [np.asarray(t, dtype=np.float64) for t in times]
    for i, u in enumerate(units):
        if not np.issubdtype(np.asarray(u).dtype, np.integer):
            raise ValueError(f"{path}: spikes/units of sample {i} must be integers, "
                             f"not dtype {np.asarray(u).dtype}")
    units = [np.asarray(u, dtype=np.int64) for u in units]
    n_times = np.fromiter(map(len, times), dtype=np.int64, count=len(times))
    n_units = np.fromiter(map(len, units), dtype=np.int64, count=len(units))
    bad = np.flatnonzero(n_times != n_units)
    if bad.size:
        raise ValueError(f"{path}: sample {bad[0]} has {n_times[bad[0]]} spike times but "
                         f"{n_units[bad[0]]} units")
    if len(times):
        sample = np.repeat(np.arange(len(times)), n_times)
        all_t, all_u = np.concatenate(times), np.concatenate(units)
        bad = np.flatnonzero(~np.isfinite(all_t) | (all_t < 0))
        if bad.size:
            raise ValueError(f"{path}: sample {sample[bad[0]]} has spike time "
                             f"{float(all_t[bad[0]])!r}; times must be finite, non-negative seconds")
        bad = np.flatnonzero((all_u < 0) | (all_u >= num_units))
        if bad.size:
            raise ValueError(f"{path}: sample {sample[bad[0]]} has unit {all_u[bad[0]]}, outside "
                             f"0..{num_units - 1}")
    return times, units, labels


def _bin_file(path, classes, bin_ms, pool, steps):
    """``(spikes [n, steps, 700 // pool] uint8, labels, dropped events, total events)``."""
    times, units, labels = read_spike_file(path, classes)
    lengths = np.fromiter(map(len, times), dtype=np.int64, count=len(times))
    total = int(lengths.sum())
    if total:
        sample = np.repeat(np.arange(len(times)), lengths)
        bins = time_bins(np.concatenate(times), bin_ms)
        chans = np.concatenate(units) // pool
    else:
        sample = bins = chans = np.zeros(0, dtype=np.int64)
    keep = bins < steps
    try:
        spikes = count_events(sample[keep], bins[keep], chans[keep], len(labels), steps,
                              NUM_UNITS // pool)
    except OverflowError as err:
        raise OverflowError(f"{path}: {err}") from None
    return spikes, labels, total - int(keep.sum()), total


def _load(task, data, bin_ms, pool, steps, seed, val_fraction, augment) -> SpikeTask:
    check_binning(NUM_UNITS, bin_ms, pool, steps)
    channels = NUM_UNITS // pool
    check_augmentation(**augment, channels=channels)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, not {seed!r}")
    if val_fraction is not None and not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be in (0, 1), not {val_fraction!r}")
    paths = _locate(task, data)
    if steps is None:
        steps = max(1, math.ceil(round(WINDOW_S * 1000.0 / bin_ms, 9)))
    classes = _CLASSES[task]
    splits, dropped = {}, []
    for split, path in paths.items():
        spikes, labels, lost, total = _bin_file(path, classes, bin_ms, pool, steps)
        if lost:
            dropped.append(f"{lost} of {total} events in {path.name}")
        splits[split] = (spikes, labels)
    window = steps * bin_ms / 1000.0
    if dropped:
        warnings.warn(f"Task {task!r}: events at or after the {window:g} s window "
                      f"({steps} steps of {bin_ms:g} ms) dropped: {'; '.join(dropped)}", stacklevel=3)
    if val_fraction is not None:
        spikes, labels = splits["train"]
        n_val = int(round(val_fraction * len(labels)))
        if not 0 < n_val < len(labels):
            raise ValueError(f"val_fraction {val_fraction!r} of {len(labels)} training samples "
                             f"leaves {n_val} for validation and {len(labels) - n_val} for training")
        order = np.random.default_rng(seed).permutation(len(labels))
        val, train = order[:n_val], order[n_val:]
        splits["val"] = (spikes[val], labels[val])
        splits["train"] = (spikes[train], labels[train])
    sets = {split: SpikeTensorDataset(*arrays) for split, arrays in splits.items()}
    train = sets["train"]
    if augment["shift_max"] or augment["channel_shift"] or augment["blend_p"]:
        train = AugmentedSpikes(train, seed=seed, **augment)
    on = [f"{k}={v:g}" for k, v in augment.items()
          if v and k in ("shift_max", "channel_shift", "blend_p")]
    title = {"shd": "Spiking Heidelberg Digits", "ssc": "Spiking Speech Commands"}[task]
    description = (f"{title} (Cramer et al. 2020): 700 units pooled by {pool} into {channels} "
                   f"channels, spike counts in {bin_ms:g} ms bins, {steps} steps ({window:g} s)"
                   + (f"; train augmented ({', '.join(on)})" if on else ""))
    return SpikeTask(task, train, sets["val"], sets["test"], inputs=channels, classes=classes,
                     steps=steps, description=description)


@register_task("shd")
def shd(data=None, bin_ms: float = 10.0, pool: int = 5, steps: int | None = None,
        val_fraction: float = 0.2, seed: int = 0, shift_max: int = 0, shift_p: float = 1.0,
        channel_shift: int = 0, blend_p: float = 0.0, thin_p: float = 0.5) -> SpikeTask:
    """Spiking Heidelberg Digits: 20 classes, ``700 // pool`` channels.

    Parameters
    ----------
    data : str or Path
        Folder holding ``shd_train.h5`` and ``shd_test.h5`` (required).
    bin_ms, pool : float, int
        Time bin in milliseconds and units summed per channel (DelRec: 10, 5).
    steps : int or None
        Time bins per sample; None gives the 1.4 s window,
        ``ceil(1400 / bin_ms)`` (140). Later events are dropped with a warning.
    val_fraction : float
        Share of the training file held out for validation (DelRec: 0.2).
    seed : int
        Seeds the validation split and the augmentation draws.
    shift_max, shift_p, channel_shift, blend_p, thin_p
        Training augmentations, off by default; see
        :class:`~.events.AugmentedSpikes`. DelRec's recipe on average:
        ``shift_max=100, shift_p=0.5, blend_p=1/3, thin_p=0.5``.
    """
    augment = dict(shift_max=shift_max, shift_p=shift_p, channel_shift=channel_shift,
                   blend_p=blend_p, thin_p=thin_p)
    return _load("shd", data, bin_ms, pool, steps, seed, val_fraction, augment)


@register_task("ssc")
def ssc(data=None, bin_ms: float = 10.0, pool: int = 5, steps: int | None = None, seed: int = 0,
        shift_max: int = 0, shift_p: float = 1.0, channel_shift: int = 0, blend_p: float = 0.0,
        thin_p: float = 0.5) -> SpikeTask:
    """Spiking Speech Commands: 35 classes, ``700 // pool`` channels.

    Options as :func:`shd`, except that the validation split is
    ``ssc_valid.h5`` (so there is no ``val_fraction``); ``data`` must hold
    ``ssc_train.h5``, ``ssc_valid.h5`` and ``ssc_test.h5``.
    """
    augment = dict(shift_max=shift_max, shift_p=shift_p, channel_shift=channel_shift,
                   blend_p=blend_p, thin_p=thin_p)
    return _load("ssc", data, bin_ms, pool, steps, seed, None, augment)
