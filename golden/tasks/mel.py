"""A cheap audio front end: log-mel filterbank and a spike code.

This is the encoder a hardware front end would use: a short-time Fourier
transform with a 1 ms hop, a mel filterbank (64 bands by default, HTK mel
scale, triangular filters), log energies, and one of two spike codes per
band:

* ``"if"`` (integrate and fire): the log energy, scaled to [0, 1] over the
  top ``range_db`` decibels of the recording, is integrated every millisecond;
  the band spikes and subtracts 1 when the integral reaches 1 (rate code, at
  most one spike per band and millisecond);
* ``"delta"`` (delta modulation): an ON spike each time the log energy rises
  ``delta_db`` above its running reference, an OFF spike each time it falls
  ``delta_db`` below; two channels per band (ON bands first, then OFF).

The output is a list of spike events ``(times in seconds, channel)``, binned
into steps by :func:`delrec.golden.tasks.events.bin_events` like every other
event source.
"""

from __future__ import annotations

import numpy as np

__all__ = ["mel_filterbank", "log_mel", "mel_spikes"]


def _hz_to_mel(f):
    return 2595.0 * np.log10(1.0 + np.asarray(f, dtype=np.float64) / 700.0)


def _mel_to_hz(m):
    return 700.0 * (10.0 ** (np.asarray(m, dtype=np.float64) / 2595.0) - 1.0)


def mel_filterbank(bands: int, fft_size: int, sample_rate: int, fmin: float = 20.0,
                   fmax: float | None = None) -> np.ndarray:
    """Triangular filters equally spaced on the HTK mel scale: ``[bands, fft_size // 2 + 1]``."""
    fmax = sample_rate / 2 if fmax is None else fmax
    if not 0 <= fmin < fmax <= sample_rate / 2:
        raise ValueError(f"Mel range must satisfy 0 <= fmin < fmax <= {sample_rate / 2} Hz, "
                         f"not [{fmin}, {fmax}]")
    if bands < 1:
        raise ValueError(f"Number of mel bands must be positive, not {bands!r}")
    edges = _mel_to_hz(np.linspace(_hz_to_mel(fmin), _hz_to_mel(fmax), bands + 2))
    freqs = np.linspace(0, sample_rate / 2, fft_size // 2 + 1)
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (freqs - lower) / (centre - lower)
    falling = (upper - freqs) / (upper - centre)
    return np.clip(np.minimum(rising, falling), 0.0, None)


def log_mel(audio: np.ndarray, sample_rate: int, bands: int = 64, hop_ms: float = 1.0,
            window_ms: float = 25.0, fmin: float = 20.0, fmax: float | None = None) -> np.ndarray:
    """Log-mel energies in dB, ``[frames, bands]``, one frame every ``hop_ms``."""
    audio = np.asarray(audio, dtype=np.float64)
    if audio.ndim != 1 or audio.size == 0:
        raise ValueError(f"Audio must be a non-empty mono array, not shape {audio.shape}")
    if not np.isfinite(audio).all():
        raise ValueError("Audio contains non-finite samples")
    hop = max(1, int(round(sample_rate * hop_ms / 1000)))
    win = max(2, int(round(sample_rate * window_ms / 1000)))
    fft_size = 1 << (win - 1).bit_length()
    padded = np.pad(audio, (win // 2, win // 2))
    frames = 1 + max(0, (padded.size - win) // hop)
    idx = np.arange(win)[None, :] + hop * np.arange(frames)[:, None]
    spectrum = np.abs(np.fft.rfft(padded[idx] * np.hanning(win), n=fft_size)) ** 2
    energies = spectrum @ mel_filterbank(bands, fft_size, sample_rate, fmin, fmax).T
    return 10.0 * np.log10(energies + 1e-10)


def normalize_bands(db: np.ndarray, active_db: float = 30.0) -> np.ndarray:
    """Remove the recording's spectral tilt (microphone, room): per-band mean subtraction.

    Each band's mean log energy over the *active* frames (loudest band within
    ``active_db`` of the recording's maximum) is subtracted and the mean of
    those means added back, so the overall level stays and only the shape of
    the long-term spectrum is flattened (cepstral mean normalisation on the
    mel bands).
    """
    active = db.max(axis=1) >= db.max() - active_db
    reference = db[active].mean(axis=0)
    return db - reference + reference.mean()


def mel_spikes(audio: np.ndarray, sample_rate: int, code: str = "if", bands: int = 64,
               hop_ms: float = 1.0, range_db: float = 60.0, delta_db: float = 3.0,
               band_norm: bool = False) -> tuple[np.ndarray, np.ndarray, int]:
    """Spike events of the log-mel code: ``(times [n] s, channels [n], number of channels)``.

    ``band_norm`` flattens the recording's long-term spectrum first
    (:func:`normalize_bands`).
    """
    if code not in ("if", "delta"):
        raise ValueError(f"Mel spike code must be 'if' or 'delta', not {code!r}")
    db = log_mel(audio, sample_rate, bands=bands, hop_ms=hop_ms)
    if band_norm:
        db = normalize_bands(db)
    hop_s = hop_ms / 1000.0
    if code == "if":
        if not range_db > 0:
            raise ValueError(f"Dynamic range must be positive, not {range_db!r} dB")
        drive = np.clip((db - (db.max() - range_db)) / range_db, 0.0, 1.0)
        integral = np.cumsum(drive, axis=0)
        # a spike whenever the integral crosses the next integer
        counts = np.diff(np.floor(integral + 1e-9), axis=0, prepend=0.0).astype(np.int64)
        frames, chans = np.nonzero(counts)
        return frames * hop_s, chans, bands
    if not delta_db > 0:
        raise ValueError(f"Delta threshold must be positive, not {delta_db!r} dB")
    floor = db.max() - range_db
    db = np.maximum(db, floor)
    reference = db[0].copy()
    times, chans = [], []
    for f in range(1, db.shape[0]):
        up = db[f] - reference >= delta_db
        down = reference - db[f] >= delta_db
        for mask, offset in ((up, 0), (down, bands)):
            hit = np.nonzero(mask)[0]
            times.append(np.full(hit.size, f * hop_s))
            chans.append(hit + offset)
        # the reference follows the signal in whole steps of delta_db
        steps = np.fix((db[f] - reference) / delta_db)
        reference = reference + steps * delta_db
    if not times:
        return np.zeros(0), np.zeros(0, dtype=np.int64), 2 * bands
    return np.concatenate(times), np.concatenate(chans).astype(np.int64), 2 * bands
