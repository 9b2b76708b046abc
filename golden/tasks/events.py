"""Spike events -> binned spike counts, and augmentations of binned samples.

Event-based audio datasets (SHD, SSC, a cochlea model's output) come as a
list of spikes: a time in seconds and the unit that fired. A task needs
``[T, C]`` arrays: :func:`bin_events` counts the spikes per time bin and per
channel, summing ``pool`` consecutive units into one channel (DelRec reduces
SHD's 700 units to 140 channels this way).

Time bin ``k`` holds the spikes with ``k <= t * 1000 / bin_ms < k + 1``
(half-open bins from time 0, computed in float64 as
``floor(t * 1000 / bin_ms)``); channel ``c`` sums units
``c * pool .. c * pool + pool - 1``.

:class:`AugmentedSpikes` wraps a binned training split with DelRec's SHD
augmentations (per-channel time shift, same-class blend) and a shift of the
channel axis, drawn afresh at every read.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

__all__ = ["bin_events", "MAX_COUNT", "AugmentedSpikes"]

MAX_COUNT = 255
"""The largest count a bin can hold: samples are stored as uint8."""


def check_binning(num_units, bin_ms, pool, steps) -> None:
    """Validate the binning parameters shared by :func:`bin_events` and the loaders.

    Raises
    ------
    ValueError
        Naming the offending value.
    """
    if isinstance(num_units, bool) or not isinstance(num_units, (int, np.integer)) or num_units < 1:
        raise ValueError(f"num_units must be a positive integer, not {num_units!r}")
    if isinstance(pool, bool) or not isinstance(pool, (int, np.integer)) or pool < 1:
        raise ValueError(f"pool must be a positive integer, not {pool!r}")
    if num_units % pool:
        raise ValueError(f"num_units {num_units} is not divisible by pool {pool}: "
                         f"{num_units % pool} units would be left out of the pooled channels")
    if isinstance(bin_ms, bool) or not isinstance(bin_ms, (int, float, np.integer, np.floating)) \
            or not np.isfinite(bin_ms) or bin_ms <= 0:
        raise ValueError(f"bin_ms must be a positive number of milliseconds, not {bin_ms!r}")
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, (int, np.integer))
                              or steps < 1):
        raise ValueError(f"steps must be a positive integer or None, not {steps!r}")


def time_bins(times_s: np.ndarray, bin_ms: float) -> np.ndarray:
    """The time bin of each event: ``floor(t * 1000 / bin_ms)`` as int64."""
    return np.floor(np.asarray(times_s, dtype=np.float64) * 1000.0 / float(bin_ms)).astype(np.int64)


def count_events(sample: np.ndarray | None, bins: np.ndarray, channels: np.ndarray, n: int,
                 steps: int, num_channels: int, chunk: int = 1024) -> np.ndarray:
    """Count events into ``[n, steps, num_channels]`` uint8.

    ``sample``, ``bins`` and ``channels`` are valid int64 indices (``sample``
    may be None for a single sample); events with ``bins >= steps`` must
    already be removed. Samples are counted ``chunk`` at a time so that the
    int64 work array stays small for large datasets.

    Raises
    ------
    OverflowError
        When a bin would hold more than :data:`MAX_COUNT` spikes; the message
        names the sample (if several), time bin, channel and count.
    """
    cells = steps * num_channels
    out = np.zeros((n, steps, num_channels), dtype=np.uint8)
    if sample is None:
        sample = np.zeros(bins.shape, dtype=np.int64)
    flat = bins * num_channels + channels
    # events sorted by sample let each chunk take a contiguous slice
    if sample.size and np.any(sample[1:] < sample[:-1]):
        order = np.argsort(sample, kind="stable")
        sample, flat = sample[order], flat[order]
    bounds = np.searchsorted(sample, np.arange(0, n + chunk, chunk))
    for i, start in enumerate(range(0, n, chunk)):
        stop = min(start + chunk, n)
        lo, hi = bounds[i], bounds[i + 1]
        counts = np.bincount((sample[lo:hi] - start) * cells + flat[lo:hi],
                             minlength=(stop - start) * cells)
        if counts.size and counts.max() > MAX_COUNT:
            where = int(np.argmax(counts > MAX_COUNT))
            s, rest = divmod(where, cells)
            t, c = divmod(rest, num_channels)
            prefix = f"sample {start + s}, " if n > 1 else ""
            raise OverflowError(f"{prefix}time bin {t}, channel {c} holds {int(counts[where])} "
                                f"spikes, more than the {MAX_COUNT} a uint8 count can hold; "
                                f"use a smaller bin_ms or pool")
        out[start:stop] = counts.reshape(stop - start, steps, num_channels)
    return out


def bin_events(times_s, units, num_units: int, bin_ms: float = 10.0, pool: int = 5,
               steps: int | None = None) -> np.ndarray:
    """Count spike events per time bin and per pooled channel.

    Parameters
    ----------
    times_s : array_like, shape (n,)
        Spike times in seconds, finite and non-negative, in any order.
    units : array_like of int, shape (n,)
        The unit that fired each spike, in ``0 .. num_units - 1``.
    num_units : int
        How many units the recording has (700 for SHD/SSC).
    bin_ms : float, default 10.0
        Width of a time bin in milliseconds; bin ``k`` holds
        ``k <= t * 1000 / bin_ms < k + 1``.
    pool : int, default 5
        Consecutive units summed into one channel; must divide ``num_units``.
    steps : int or None, default None
        Number of time bins ``T``. ``None`` keeps every event:
        ``T = (bin of the last spike) + 1``, that is ``ceil(max_time / bin)``
        except that a spike exactly on a bin edge opens a new bin (and
        ``T = 1`` when there are no spikes). Given explicitly, ``T = steps``
        and spikes at or after ``steps * bin_ms`` are dropped: that
        truncation is the caller's choice (compare ``time_bins`` with
        ``steps`` beforehand to count what is cut).

    Returns
    -------
    numpy.ndarray of uint8, shape (T, num_units // pool)
        Spike counts.

    Raises
    ------
    ValueError
        For malformed inputs: shapes, negative or non-finite times,
        non-integer units or units outside ``0 .. num_units - 1``, bad
        ``num_units``/``pool``/``bin_ms``/``steps``; the message names the
        value and the limit.
    OverflowError
        When a bin would count more than 255 spikes (nothing is clipped);
        the message names the time bin, the channel and the count.
    """
    check_binning(num_units, bin_ms, pool, steps)
    times = np.asarray(times_s)
    units = np.asarray(units)
    if times.ndim != 1 or units.ndim != 1:
        raise ValueError(f"times_s and units must be 1-D, not shapes {times.shape} and {units.shape}")
    if times.shape != units.shape:
        raise ValueError(f"times_s has {times.size} events but units has {units.size}")
    if times.size and not (np.issubdtype(times.dtype, np.number) and not np.iscomplexobj(times)):
        raise ValueError(f"times_s must be real numbers, not dtype {times.dtype}")
    times = times.astype(np.float64)
    if not np.all(np.isfinite(times)):
        bad = float(times[~np.isfinite(times)][0])
        raise ValueError(f"Spike times must be finite, not {bad!r}")
    if times.size and times.min() < 0:
        raise ValueError(f"Spike times must be non-negative seconds, not {float(times.min())!r}")
    if units.size:
        if np.issubdtype(units.dtype, np.integer):
            units = units.astype(np.int64)
        elif np.issubdtype(units.dtype, np.floating) and np.all(units == np.round(units)):
            units = units.astype(np.int64)
        else:
            raise ValueError(f"Units must be integers, not dtype {units.dtype}"
                             + (f" (e.g. {float(units[units != np.round(units)][0])!r})"
                                if np.issubdtype(units.dtype, np.floating) else ""))
        if units.min() < 0 or units.max() >= num_units:
            bad = units.min() if units.min() < 0 else units.max()
            raise ValueError(f"Unit {int(bad)} is out of range 0..{num_units - 1} "
                             f"(num_units={num_units})")
    units = units.astype(np.int64)
    bins = time_bins(times, bin_ms)
    if steps is None:
        steps = int(bins.max()) + 1 if bins.size else 1
    else:
        keep = bins < steps
        bins, units = bins[keep], units[keep]
    return count_events(None, bins, units // pool, 1, int(steps), num_units // pool)[0]


class AugmentedSpikes(Dataset):
    """A training split with DelRec's SHD augmentations drawn afresh per sample.

    Every ``__getitem__`` draws from its own generator, seeded with
    ``(seed, epoch, index, visit)`` where ``visit`` counts earlier reads of
    that index since the last :meth:`set_epoch`: the same reads give the
    same samples, and a sample read again (next epoch) gets a new draw.
    Calling ``set_epoch(epoch)`` at the start of each epoch makes the draws
    independent of what was read before (a resumed run then sees what an
    uninterrupted one would). The visit counts live in the process that
    reads: with ``DataLoader(num_workers > 0)`` call ``set_epoch`` every
    epoch, or worker copies would repeat the first epoch's draws.

    Per read, in this order:

    1. blend, with probability ``blend_p`` (DelRec's "blend"): a partner is
       drawn uniformly among the *other* samples of the same class, moved in
       time so that its centre of mass (spike count over time) falls on the
       sample's (zeros shifted in, what leaves the window is cut), and the
       result is ``Binomial(x, thin_p) + Binomial(partner, thin_p)``: each
       spike of either kept with probability ``thin_p``. A class with a
       single sample has no partner: the read falls through to step 2.
    2. otherwise, with probability ``shift_p`` when ``shift_max > 0``,
       DelRec's per-channel time shift: every channel is delayed (positive)
       or advanced (negative) by its own integer drawn uniformly from
       ``-shift_max .. shift_max`` steps, zeros shifted in.
    3. then, when ``stretch > 0``, time is scaled by a factor drawn uniformly
       from ``1 - stretch .. 1 + stretch`` (speaking rate; every spike moves
       from step ``t`` to ``round(t * factor)``, those leaving the window are
       cut; see :func:`stretch_time`);
    4. then, when ``channel_shift > 0``, the whole channel axis is shifted by
       one integer drawn from ``-channel_shift .. channel_shift`` (channel
       ``c`` receives channel ``c - s``), zeros shifted in.

    The label never changes. DelRec's recipe (each epoch sees every sample
    plain, time-shifted and blended once, ``shift_max=100`` for 10 ms bins,
    ``thin_p=0.5``) corresponds on average to ``blend_p=1/3, shift_p=0.5``.

    Parameters
    ----------
    base : SpikeTensorDataset
        The split to augment (its ``spikes`` and ``labels`` are read).
    seed : int
        Non-negative seed of the draws.
    """

    def __init__(self, base, seed: int = 0, shift_max: int = 0, shift_p: float = 1.0,
                 channel_shift: int = 0, blend_p: float = 0.0, thin_p: float = 0.5,
                 stretch: float = 0.0):
        check_augmentation(shift_max, shift_p, channel_shift, blend_p, thin_p,
                           channels=base.spikes.shape[2])
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"Augmentation seed must be a non-negative integer, not {seed!r}")
        self.base = base
        self.seed, self.epoch = int(seed), 0
        self.shift_max, self.shift_p = int(shift_max), float(shift_p)
        self.channel_shift = int(channel_shift)
        self.blend_p, self.thin_p = float(blend_p), float(thin_p)
        if not 0 <= stretch < 1:
            raise ValueError(f"stretch must be in [0, 1), not {stretch!r}")
        self.stretch = float(stretch)
        labels = base.labels.numpy()
        self._visits = np.zeros(len(labels), dtype=np.int64)
        self._by_class = {int(y): np.flatnonzero(labels == y) for y in np.unique(labels)}

    @property
    def labels(self):
        return self.base.labels

    def __len__(self) -> int:
        return len(self.base)

    def set_epoch(self, epoch: int) -> None:
        """Key the draws to ``epoch`` and restart the visit counts."""
        self.epoch = int(epoch)
        self._visits[:] = 0

    def _partner(self, rng, index: int, label: int):
        pool = self._by_class[label]
        if len(pool) < 2:
            return None
        k = int(rng.integers(len(pool) - 1))
        own = int(np.searchsorted(pool, index))
        return int(pool[k + 1 if k >= own else k])

    def __getitem__(self, index):
        index = int(index)
        if not -len(self) <= index < len(self):
            raise IndexError(f"Index {index} out of range for {len(self)} samples")
        index %= len(self)
        rng = np.random.default_rng([self.seed, self.epoch, index, int(self._visits[index])])
        self._visits[index] += 1
        x = self.base.spikes[index].numpy().astype(np.int64)
        label = int(self.base.labels[index])
        partner = None
        if self.blend_p > 0 and rng.random() < self.blend_p:
            partner = self._partner(rng, index, label)
        if partner is not None:
            other = self.base.spikes[partner].numpy().astype(np.int64)
            align = int(round(center_of_mass(x) - center_of_mass(other)))
            other = shift_time(other, np.full(other.shape[1], align))
            x = rng.binomial(x, self.thin_p) + rng.binomial(other, self.thin_p)
        elif self.shift_max > 0 and rng.random() < self.shift_p:
            x = shift_time(x, rng.integers(-self.shift_max, self.shift_max + 1, size=x.shape[1]))
        if self.stretch > 0:
            x = stretch_time(x, float(rng.uniform(1 - self.stretch, 1 + self.stretch)))
        if self.channel_shift > 0:
            x = shift_channels(x, int(rng.integers(-self.channel_shift, self.channel_shift + 1)))
        return torch.from_numpy(x.astype(np.float32)), label


def check_augmentation(shift_max, shift_p, channel_shift, blend_p, thin_p, channels) -> None:
    """Validate :class:`AugmentedSpikes` options; errors name the value."""
    for name, value in (("shift_max", shift_max), ("channel_shift", channel_shift)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise ValueError(f"{name} must be a non-negative integer, not {value!r}")
    if channel_shift >= channels:
        raise ValueError(f"channel_shift {channel_shift} must be below the {channels} channels")
    for name, value in (("shift_p", shift_p), ("blend_p", blend_p)):
        if not 0 <= value <= 1:
            raise ValueError(f"{name} must be a probability in [0, 1], not {value!r}")
    if not 0 < thin_p <= 1:
        raise ValueError(f"thin_p must be in (0, 1], not {thin_p!r}")


def center_of_mass(x: np.ndarray) -> float:
    """Mean time step of the spikes of ``x [T, C]``; the middle step if there are none."""
    mass = x.sum(axis=1).astype(np.float64)
    total = mass.sum()
    if total <= 0:
        return 0.5 * (x.shape[0] - 1)
    return float((np.arange(x.shape[0]) * mass).sum() / total)


def shift_time(x: np.ndarray, shifts: np.ndarray) -> np.ndarray:
    """``out[t, c] = x[t - shifts[c], c]``, zero where ``t - shifts[c]`` leaves ``0..T-1``."""
    steps = x.shape[0]
    src = np.arange(steps)[:, None] - np.asarray(shifts, dtype=np.int64)[None, :]
    valid = (src >= 0) & (src < steps)
    moved = np.take_along_axis(x, np.clip(src, 0, steps - 1), axis=0)
    return np.where(valid, moved, 0).astype(x.dtype)


def stretch_time(x: np.ndarray, factor: float) -> np.ndarray:
    """Move the counts of step ``t`` to step ``round(t * factor)``; beyond the window they are cut."""
    steps = x.shape[0]
    target = np.floor(np.arange(steps) * factor + 0.5).astype(np.int64)
    keep = target < steps
    out = np.zeros_like(x)
    np.add.at(out, target[keep], x[keep])
    return out


def shift_channels(x: np.ndarray, shift: int) -> np.ndarray:
    """``out[:, c] = x[:, c - shift]``, zero where ``c - shift`` leaves the channels."""
    out = np.zeros_like(x)
    channels = x.shape[1]
    if shift >= 0:
        out[:, shift:] = x[:, :channels - shift]
    else:
        out[:, :channels + shift] = x[:, -shift:]
    return out
