"""``ps-mnist``: permuted sequential MNIST.

The 70,000 28x28 MNIST digits (LeCun, Cortes and Burges; the idx files
``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``, plain or ``.gz``)
read one pixel per step in a random order fixed by ``permutation_seed``: 784
steps. Each pixel (0..255) is shown through the thermometer code of
``ps-digits``: channel ``c`` spikes when the pixel exceeds
``c * 255 / levels``. (DelRec feeds the analog pixel value as one input
current; a spiking input needs a code, and this is the one ``ps-digits``
uses.) The validation split, ``val_fraction`` of the training file (1/6:
50,000 / 10,000 as in DelRec), is drawn with ``seed``; the test split is
the t10k file.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from .base import SpikeTask, SpikeTensorDataset, data_folder, register_task
from .digits import encode_thermometer

__all__ = ["ps_mnist", "read_idx", "MNIST_FILES"]

MNIST_FILES = {"train_images": "train-images-idx3-ubyte", "train_labels": "train-labels-idx1-ubyte",
               "test_images": "t10k-images-idx3-ubyte", "test_labels": "t10k-labels-idx1-ubyte"}
SOURCE = ("the MNIST idx files published at http://yann.lecun.com/exdb/mnist/ "
          "(torchvision's datasets.MNIST(root, download=True) stores them in root/MNIST/raw)")
_UBYTE = 0x08


def _find(data) -> dict[str, Path]:
    names = ", ".join(MNIST_FILES.values())
    folder = data_folder("ps-mnist", data, f"{names} (or their .gz)", SOURCE)
    # accept torchvision's layout too: root/MNIST/raw
    candidates = [folder, folder / "MNIST" / "raw"]
    found, missing = {}, []
    for key, name in MNIST_FILES.items():
        for place in candidates:
            hit = next((place / n for n in (name, name + ".gz") if (place / n).is_file()), None)
            if hit:
                found[key] = hit
                break
        else:
            missing.append(name)
    if missing:
        raise FileNotFoundError(f"Data folder {folder} for task 'ps-mnist' lacks "
                                f"{', '.join(missing)} (nor .gz); expected {SOURCE}")
    return found


def read_idx(path, ndim: int) -> np.ndarray:
    """Read an idx file of unsigned bytes with ``ndim`` dimensions (``.gz`` decompressed).

    Raises
    ------
    ValueError
        Naming the file: a bad magic number (not ``0x0000 08 ndim``), a
        truncated header, or a size that does not match the header.
    """
    path = Path(path)
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as err:
        raise ValueError(f"{path} is not a readable gzip file: {err}") from None
    if len(raw) < 4:
        raise ValueError(f"{path} is too short for an idx header ({len(raw)} bytes)")
    magic = int.from_bytes(raw[:4], "big")
    expected = (_UBYTE << 8) | ndim
    if magic != expected:
        raise ValueError(f"{path} has magic number 0x{magic:08x}, not 0x{expected:08x} "
                         f"(idx, unsigned bytes, {ndim} dimension{'s' if ndim > 1 else ''})")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{path} is too short for its idx header: {len(raw)} of {header} bytes")
    shape = tuple(int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    size = int(np.prod(shape, dtype=np.int64))
    if len(raw) - header != size:
        raise ValueError(f"{path} holds {len(raw) - header} bytes of data but its header "
                         f"{shape} needs {size}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def _read_pair(images_path, labels_path):
    images = read_idx(images_path, 3)
    labels = read_idx(labels_path, 1)
    if images.shape[0] != labels.shape[0]:
        raise ValueError(f"{images_path} holds {images.shape[0]} images but {labels_path} "
                         f"holds {labels.shape[0]} labels")
    if images.shape[1:] != (28, 28):
        raise ValueError(f"{images_path} holds {images.shape[1]}x{images.shape[2]} images, "
                         f"not MNIST's 28x28")
    if labels.size and labels.max() > 9:
        bad = int(np.argmax(labels > 9))
        raise ValueError(f"{labels_path}: label {labels[bad]} of sample {bad} is not a digit 0..9")
    return images.reshape(len(images), -1), labels.astype(np.int64)


@register_task("ps-mnist")
def ps_mnist(data=None, seed: int = 0, permutation_seed: int = 0, levels: int = 8,
             val_fraction: float = 1 / 6) -> SpikeTask:
    """Permuted sequential MNIST: 784 steps, ``levels`` channels, 10 classes.

    Parameters
    ----------
    data : str or Path
        Folder holding the four idx files, plain or ``.gz`` (or torchvision's
        ``root`` with them in ``MNIST/raw``); required.
    seed : int
        Seeds the train/validation split.
    permutation_seed : int
        Seeds the pixel order (the same for every split).
    levels : int
        Thermometer channels, 1..255.
    val_fraction : float
        Share of the 60,000 training images held out for validation.
    """
    if isinstance(levels, bool) or not isinstance(levels, (int, np.integer)) or not 1 <= levels <= 255:
        raise ValueError(f"Thermometer levels must be in 1..255, not {levels!r}")
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be in (0, 1), not {val_fraction!r}")
    for name, value in (("seed", seed), ("permutation_seed", permutation_seed)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise ValueError(f"{name} must be a non-negative integer, not {value!r}")
    paths = _find(data)
    train_x, train_y = _read_pair(paths["train_images"], paths["train_labels"])
    test_x, test_y = _read_pair(paths["test_images"], paths["test_labels"])
    n_val = int(round(val_fraction * len(train_y)))
    if not 0 < n_val < len(train_y):
        raise ValueError(f"val_fraction {val_fraction!r} of {len(train_y)} training images leaves "
                         f"{n_val} for validation and {len(train_y) - n_val} for training")
    order = np.random.default_rng(permutation_seed).permutation(train_x.shape[1])
    split = np.random.default_rng(seed).permutation(len(train_y))
    val, train = split[:n_val], split[n_val:]

    def make(images, labels):
        return SpikeTensorDataset(encode_thermometer(images[:, order], levels, max_value=255.0),
                                  labels)

    return SpikeTask("ps-mnist", make(train_x[train], train_y[train]), make(train_x[val], train_y[val]),
                     make(test_x, test_y), inputs=levels, classes=10, steps=train_x.shape[1],
                     description="permuted sequential MNIST, thermometer-coded pixels, 784 steps")
