"""``spoken-digits``: a folder of spoken-digit recordings as spike trains.

Files are named like the Free Spoken Digit Dataset (Jakobovski et al.,
CC BY-SA 4.0): ``{digit}_{speaker}_{index}.wav``, any sample rate. Two
encoders turn audio into spike events, which are binned (``bin_ms``) and
pooled (``pool`` channels summed) into ``[T, C]`` counts:

* ``"cochlea"`` -- the chain that made the Spiking Heidelberg Digits
  (Cramer et al. 2020): audio resampled to 48 kHz, RMS normalisation, window,
  basilar membrane, hair cells and bushy cells, 700 channels
  (:mod:`delrec.golden.tasks.cochlea`); pooled 700 -> 140 by default;
* ``"mel"`` -- a log-mel filterbank with an integrate-and-fire or
  delta-modulation code (:mod:`delrec.golden.tasks.mel`), the cheap front end.

Encoded recordings are cached on disk, keyed by the file's content and every
encoder parameter, and converted in parallel on the machine's cores.

Splits: ``"standard"`` (indices 0-4 of every digit and speaker are the test
set) or held-out speakers (``test_speakers``: every recording of those
speakers is the test set, the others train). The validation set is a seeded
``val_fraction`` of the training recordings.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from .base import SpikeTask, SpikeTensorDataset, register_task
from .events import AugmentedSpikes, check_augmentation

__all__ = ["Recording", "scan_recordings", "read_wav", "encoder_parameters", "encode_recording",
           "encode_folder", "spoken_digits"]

# Bump when an encoder's output changes, so old cache entries are not reused.
ENCODER_VERSION = 1

_NAME = re.compile(r"^(\d)_([A-Za-z0-9-]+)_(\d+)\.wav$")


@dataclass(frozen=True)
class Recording:
    path: Path
    digit: int
    speaker: str
    index: int


def scan_recordings(folder) -> list[Recording]:
    """Every ``{digit}_{speaker}_{index}.wav`` under ``folder`` (other names are an error)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(
            f"Spoken-digit folder {folder} does not exist (expected wav files named "
            f"digit_speaker_index.wav, e.g. the Free Spoken Digit Dataset's recordings/)")
    recordings, bad = [], []
    for path in sorted(folder.rglob("*.wav")):
        match = _NAME.match(path.name)
        if match is None:
            bad.append(path.name)
            continue
        recordings.append(Recording(path, int(match[1]), match[2], int(match[3])))
    if bad:
        raise ValueError(f"{len(bad)} wav files in {folder} are not named digit_speaker_index.wav, "
                         f"e.g. {bad[0]!r}")
    if not recordings:
        raise ValueError(f"No wav files in {folder}")
    return recordings


def read_wav(path) -> tuple[np.ndarray, int]:
    """``(audio float64 in [-1, 1], sample rate)``; several channels are averaged."""
    from scipy.io import wavfile

    try:
        rate, data = wavfile.read(path)
    except Exception as exc:  # scipy raises ValueError and others on bad files
        raise ValueError(f"Cannot read {path} as a wav file: {exc}") from exc
    if np.issubdtype(data.dtype, np.integer):
        info = np.iinfo(data.dtype)
        data = (data.astype(np.float64) - (info.max + 1 + info.min) / 2) / ((info.max - info.min + 1) / 2)
    else:
        data = data.astype(np.float64)
    if data.ndim == 2:
        data = data.mean(axis=1)
    if data.size == 0:
        raise ValueError(f"{path} holds no samples")
    return data, int(rate)


def encoder_parameters(encoder: str, options: dict) -> dict:
    """The full parameter set of ``encoder`` (the cache key), defaults filled in.

    ``options`` must hold ``bin_ms`` and ``pool``; the encoder's own options
    (e.g. ``cochlea_mode``, ``bands``) default as in :func:`spoken_digits`.
    """
    if encoder == "cochlea":
        keys = {"cochlea_mode": "fast", "window": "hann", "ramp_ms": 10.0, "channels": 700,
                "fibres": 40}
    elif encoder == "mel":
        keys = {"mel_code": "if", "bands": 64, "range_db": 60.0, "delta_db": 3.0, "band_norm": False}
    else:
        raise ValueError(f"Encoder must be 'cochlea' or 'mel', not {encoder!r}")
    params = {k: options.get(k, v) for k, v in keys.items()}
    params.update(encoder=encoder, bin_ms=float(options["bin_ms"]), pool=int(options["pool"]),
                  version=ENCODER_VERSION)
    return params


def encode_recording(path, params: dict) -> np.ndarray:
    """One recording -> counts ``[T, C]`` (uint8), with ``params`` from the task."""
    from .events import bin_events

    audio, rate = read_wav(path)
    if params["encoder"] == "cochlea":
        from .cochlea import cochlea_spikes

        seed = int.from_bytes(hashlib.sha256(Path(path).read_bytes()).digest()[:4], "little")
        times, units = cochlea_spikes(audio, rate, mode=params["cochlea_mode"], seed=seed,
                                      channels=params["channels"], fibres=params["fibres"],
                                      window=params["window"], ramp_ms=params["ramp_ms"])
        channels = params["channels"]
    else:
        from .mel import mel_spikes

        times, units, channels = mel_spikes(audio, rate, code=params["mel_code"],
                                            bands=params["bands"], range_db=params["range_db"],
                                            delta_db=params["delta_db"],
                                            band_norm=params["band_norm"])
    steps = max(1, int(np.ceil(len(audio) / rate * 1000.0 / params["bin_ms"])))
    return bin_events(times, units, channels, bin_ms=params["bin_ms"], pool=params["pool"],
                      steps=steps)


def _cache_key(path: Path, params: dict) -> str:
    h = hashlib.sha256(path.read_bytes())
    h.update(json.dumps(params, sort_keys=True).encode())
    return h.hexdigest()[:32]


def _encode_to_cache(job):
    path, params, target = job
    counts = encode_recording(path, params)
    tmp = target.with_name(target.name + f".{os.getpid()}.tmp.npy")
    np.save(tmp, counts)
    os.replace(tmp, target)
    return target


def default_cache_dir() -> Path:
    return Path(os.environ.get("DELREC_CACHE", Path.home() / ".cache" / "delrec")) / "spoken"


def encode_folder(recordings, params: dict, cache_dir=None, workers: int | None = None,
                  progress: bool = True) -> list[np.ndarray]:
    """Encode every recording (cached), in parallel on ``workers`` processes."""
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    cache_dir.mkdir(parents=True, exist_ok=True)
    targets = [cache_dir / f"{_cache_key(r.path, params)}.npy" for r in recordings]
    todo = [(r.path, params, t) for r, t in zip(recordings, targets) if not t.exists()]
    if todo:
        workers = workers or os.cpu_count() or 1
        bar = tqdm(total=len(todo), desc=f"encoding ({params['encoder']})", unit="file",
                   disable=not progress, file=sys.stderr)
        if workers == 1:
            for job in todo:
                _encode_to_cache(job)
                bar.update()
        else:
            with ProcessPoolExecutor(max_workers=workers) as pool:
                for _ in pool.map(_encode_to_cache, todo, chunksize=4):
                    bar.update()
        bar.close()
    return [np.load(t) for t in targets]


def _stack(arrays, steps: int) -> np.ndarray:
    out = np.zeros((len(arrays), steps, arrays[0].shape[1]), dtype=np.uint8)
    for i, a in enumerate(arrays):
        n = min(steps, a.shape[0])
        out[i, :n] = a[:n]
    return out


@register_task("spoken-digits")
def spoken_digits(data=None, encoder: str = "mel", test_speakers=None, bin_ms: float = 10.0,
                  pool: int | None = None, steps: int | None = None, val_fraction: float = 0.1,
                  seed: int = 0, cache_dir=None, workers: int | None = None,
                  progress: bool = True, shift_max: int = 0, shift_p: float = 1.0,
                  channel_shift: int = 0, blend_p: float = 0.0, thin_p: float = 0.5,
                  stretch: float = 0.0, **encoder_options) -> SpikeTask:
    """Spoken digits from the folder ``data``.

    ``pool`` defaults to 5 for the cochlea (700 -> 140 channels) and 1 for mel.
    ``steps`` defaults to the longest recording, so nothing is cut; a smaller
    value truncates longer recordings (an explicit choice).
    ``shift_max``, ``shift_p``, ``channel_shift``, ``blend_p``, ``thin_p``,
    ``stretch`` augment the training split (:class:`~.events.AugmentedSpikes`).
    """
    if data is None:
        raise ValueError("Task 'spoken-digits' needs data=FOLDER (--data PATH), a folder of "
                         "digit_speaker_index.wav files such as the Free Spoken Digit Dataset")
    if not 0 <= val_fraction < 1:
        raise ValueError(f"Validation fraction must be in [0, 1), not {val_fraction!r}")
    recordings = scan_recordings(data)
    if pool is None:
        pool = 5 if encoder == "cochlea" else 1
    params = encoder_parameters(encoder, dict(encoder_options, bin_ms=bin_ms, pool=pool))
    unknown = set(encoder_options) - set(params)
    if unknown:
        raise ValueError(f"Unknown option(s) {sorted(unknown)} for the {encoder!r} encoder")
    speakers = sorted({r.speaker for r in recordings})
    if test_speakers:
        test_speakers = [test_speakers] if isinstance(test_speakers, str) else list(test_speakers)
        missing = sorted(set(test_speakers) - set(speakers))
        if missing:
            raise ValueError(f"Test speaker(s) {missing} not among the speakers of {data}: {speakers}")
        is_test = np.array([r.speaker in test_speakers for r in recordings])
        if is_test.all():
            raise ValueError(f"Holding out {test_speakers} leaves no training speaker")
    else:
        is_test = np.array([r.index <= 4 for r in recordings])
    counts = encode_folder(recordings, params, cache_dir=cache_dir, workers=workers, progress=progress)
    steps = steps or max(c.shape[0] for c in counts)
    spikes = _stack(counts, steps)
    labels = np.array([r.digit for r in recordings])
    train_idx = np.nonzero(~is_test)[0]
    test_idx = np.nonzero(is_test)[0]
    rng = np.random.default_rng(seed)
    train_idx = rng.permutation(train_idx)
    n_val = int(round(val_fraction * len(train_idx)))
    val_idx, train_idx = np.sort(train_idx[:n_val]), np.sort(train_idx[n_val:])
    make = lambda rows: SpikeTensorDataset(spikes[rows], labels[rows])  # noqa: E731
    split = f"held-out speakers {test_speakers}" if test_speakers else "standard split (indices 0-4 test)"
    train = make(train_idx)
    if shift_max or channel_shift or blend_p or stretch:
        train = AugmentedSpikes(train, seed=seed, shift_max=shift_max, shift_p=shift_p,
                                channel_shift=channel_shift, blend_p=blend_p, thin_p=thin_p,
                                stretch=stretch)
    else:
        check_augmentation(shift_max, shift_p, channel_shift, blend_p, thin_p,
                           channels=spikes.shape[2])
    return SpikeTask("spoken-digits", train, make(val_idx), make(test_idx),
                     inputs=spikes.shape[2], classes=10, steps=steps,
                     description=f"{len(recordings)} recordings of {len(speakers)} speakers, "
                                 f"{encoder} encoder, {split}")
