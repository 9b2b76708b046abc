"""``ps-digits``: permuted sequential digits.

scikit-learn's bundled 8x8 handwritten digits (1,797 images, 16 gray levels;
UCI "Optical Recognition of Handwritten Digits") read pixel by pixel in a
seeded random order, the small offline sibling of PS-MNIST. Each step shows
one pixel through a thermometer code: channel ``c`` spikes when the pixel
value exceeds ``c * 16 / levels``, so ``levels`` channels and 64 steps.
"""

from __future__ import annotations

import numpy as np

from .base import SpikeTask, SpikeTensorDataset, register_task

__all__ = ["ps_digits"]


def encode_thermometer(images: np.ndarray, levels: int, max_value: float = 16.0) -> np.ndarray:
    """``[n, P]`` pixel values in 0..max_value -> spikes ``[n, P, levels]``.

    Channel ``c`` spikes when the pixel exceeds ``c * max_value / levels``
    (16 for these digits, 255 for MNIST's bytes).
    """
    thresholds = np.arange(levels) * (float(max_value) / levels)
    return (images[:, :, None] > thresholds[None, None, :]).astype(np.uint8)


@register_task("ps-digits")
def ps_digits(seed: int = 0, permutation_seed: int = 0, levels: int = 8,
              val_fraction: float = 0.1, test_fraction: float = 0.2) -> SpikeTask:
    """Splits are drawn with ``seed``; the pixel order with ``permutation_seed``."""
    from sklearn.datasets import load_digits

    if not 1 <= levels <= 16:
        raise ValueError(f"Thermometer levels must be in 1..16, not {levels!r}")
    if not (0 < val_fraction < 1 and 0 < test_fraction < 1 and val_fraction + test_fraction < 1):
        raise ValueError(f"Validation and test fractions must be in (0, 1) and sum below 1, "
                         f"not {val_fraction!r} and {test_fraction!r}")
    digits = load_digits()
    images = digits.data.astype(np.float64)  # [1797, 64]
    labels = digits.target.astype(np.int64)
    order = np.random.default_rng(permutation_seed).permutation(images.shape[1])
    spikes = encode_thermometer(images[:, order], levels)
    idx = np.random.default_rng(seed).permutation(len(labels))
    n_test = int(round(test_fraction * len(idx)))
    n_val = int(round(val_fraction * len(idx)))
    test, val, train = idx[:n_test], idx[n_test:n_test + n_val], idx[n_test + n_val:]
    make = lambda rows: SpikeTensorDataset(spikes[rows], labels[rows])  # noqa: E731
    return SpikeTask("ps-digits", make(train), make(val), make(test), inputs=levels, classes=10,
                     steps=images.shape[1],
                     description="permuted sequential 8x8 digits, thermometer-coded pixels")
