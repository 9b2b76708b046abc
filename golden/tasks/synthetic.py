"""``delayed-xor``: a task that needs delays longer than the membrane time constant.

Two cues, each one of ``P`` fixed spike patterns, are presented ``gap``
steps apart (``gap`` drawn per sample, tens of steps) at a random onset, over
Poisson background noise. The class is ``(second - first) mod P`` (for
``P = 2`` the XOR of the two cues). Each cue alone carries no information
about the class, so neither a memoryless network nor a readout that sums
evidence over time does better than chance: the first cue must be carried
across the gap. With a membrane time constant of about one step
(tau = 1.05) a LIF neuron forgets within a step; a recurrent delay of about
``gap`` steps brings the first cue to the second, where a coincidence
detector recognises the pair.
"""

from __future__ import annotations

import numpy as np

from .base import SpikeTask, SpikeTensorDataset, register_task

__all__ = ["delayed_xor"]


def _patterns(rng, count: int, channels: int, active: int) -> np.ndarray:
    """``count`` disjoint sets of ``active`` channels: ``[count, channels]`` bool."""
    if count * active > channels:
        raise ValueError(f"{count} cue patterns of {active} channels need at least "
                         f"{count * active} channels, not {channels}")
    order = rng.permutation(channels)
    pats = np.zeros((count, channels), dtype=bool)
    for i in range(count):
        pats[i, order[i * active:(i + 1) * active]] = True
    return pats


def _generate(rng, patterns, n, steps, gap_range, cue_steps, cue_rate, noise_rate):
    count, channels = patterns.shape
    gap_lo, gap_hi = gap_range
    latest_onset = steps - gap_hi - cue_steps
    spikes = rng.random((n, steps, channels)) < noise_rate
    first = rng.integers(0, count, size=n)
    second = rng.integers(0, count, size=n)
    labels = (second - first) % count
    onsets = rng.integers(0, latest_onset + 1, size=n)
    gaps = rng.integers(gap_lo, gap_hi + 1, size=n)
    for i in range(n):
        for cue, start in ((first[i], onsets[i]), (second[i], onsets[i] + gaps[i])):
            burst = rng.random((cue_steps, channels)) < cue_rate
            spikes[i, start:start + cue_steps] |= burst & patterns[cue]
    return spikes.astype(np.uint8), labels


@register_task("delayed-xor")
def delayed_xor(seed: int = 0, patterns: int = 4, channels: int = 32, steps: int = 64,
                gap_min: int = 30, gap_max: int = 36, cue_steps: int = 4, cue_channels: int = 8,
                cue_rate: float = 0.8, noise_rate: float = 0.02, train_size: int = 2048,
                val_size: int = 512, test_size: int = 1024) -> SpikeTask:
    """Build the task; the same ``seed`` gives the same patterns and samples.

    The data seed is part of the task, not of the run: runs with different
    training seeds see the same splits.
    """
    if not 0 < gap_min <= gap_max:
        raise ValueError(f"Gap range must satisfy 0 < gap_min <= gap_max, not [{gap_min}, {gap_max}]")
    if steps < gap_max + cue_steps + 1:
        raise ValueError(f"{steps} steps cannot hold a gap of {gap_max} and a cue of {cue_steps} steps")
    for name, rate in (("cue_rate", cue_rate), ("noise_rate", noise_rate)):
        if not 0 <= rate <= 1:
            raise ValueError(f"{name} must be a probability, not {rate!r}")
    if patterns < 2:
        raise ValueError(f"Need at least 2 cue patterns, not {patterns!r}")
    rng = np.random.default_rng(seed)
    classes = patterns
    patterns = _patterns(rng, classes, channels, cue_channels)
    args = (steps, (gap_min, gap_max), cue_steps, cue_rate, noise_rate)
    train = SpikeTensorDataset(*_generate(rng, patterns, train_size, *args))
    val = SpikeTensorDataset(*_generate(rng, patterns, val_size, *args))
    test = SpikeTensorDataset(*_generate(rng, patterns, test_size, *args))
    return SpikeTask("delayed-xor", train, val, test, inputs=channels, classes=classes, steps=steps,
                     description=f"(second - first) mod {classes} of two cues "
                                 f"{gap_min}-{gap_max} steps apart")
