"""Audio to spikes through the cochlea model behind the Spiking Heidelberg Digits.

Cramer et al. (2020, "The Heidelberg Spiking Data Sets for the Systematic
Evaluation of Spiking Neural Networks") turned 48 kHz recordings into spikes
with the ``lauscher`` chain; this module computes the same equations with the
same parameters, with numpy and scipy only:

1. RMS normalisation to 0.3;
2. a window: lauscher's Hann window over the whole clip (``window="hann"``), or
   raised-cosine ramps of ``ramp_ms`` at both ends (``window="ramp"``; the Hann
   window suppresses the onsets of clips that were trimmed of silence);
3. the hydrodynamic basilar membrane of Sieroka, Dosch and Rupp (2006),
   ``channels`` places ``c`` evenly spaced in [0, 3.5] (channel 0 is the base,
   about 22.5 kHz; the last channel the apex, about 100 Hz). As in lauscher the
   membrane velocity is ``Re(ifft(V(omega_k, c) * fft(x)[k]))`` over the
   ``M = N // 2 + 1`` non-negative frequency bins, evaluated at
   ``omega_k = 2 pi linspace(1, 24000, M)``, which yields ``M`` samples at
   24 kHz (half the audio rate);
4. the Meddis (1986, 1988) inner hair cell at 24 kHz, whose cleft contents
   times ``h dt`` is each fibre's spike probability per sample;
5. ``fibres`` (40) Bernoulli fibres per channel, each silent for 1 ms after
   each of its spikes, converge with weight ``13e3 / fibres`` on one leaky
   integrate-and-fire bushy cell per channel (tau_mem 1 ms, tau_syn 0.5 ms,
   1 ms refractory); its spikes are the output.

Input at any rate is first resampled to 48 kHz (SHD's rate) with
:func:`scipy.signal.resample_poly` (polyphase, Kaiser window with beta 5),
unless it already is 48 kHz; lauscher itself takes a file at its own rate, so
to compare with it feed both the same 48 kHz array.

Two modes share steps 1-2:

``mode="exact"``
    Spike for spike equal to lauscher 1.0.1 given the same random state. The
    only randomness in lauscher is ``BushyCell._sample``: for each channel in
    order, ``np.random.rand(num_samples, n_convergence)`` from numpy's global
    legacy ``RandomState`` (MT19937), compared with the channel's probability.
    Exact mode draws the same doubles in the same order (channel by channel,
    sample-major, fibre-minor) from ``np.random.RandomState(seed)``, or from
    ``rng`` when given (a ``RandomState``, e.g. ``np.random.mtrand._rand`` to
    consume the global stream as lauscher does, or a ``Generator`` over an
    ``MT19937``, whose ``random()`` yields the same doubles as
    ``random_sample()`` from the same state). ``np.random.seed(s)`` then
    lauscher therefore equals ``cochlea_spikes(..., mode="exact", seed=s)``.
    The hair cell, ``_correct`` (per-fibre refractoriness) and ``_lif`` (with
    its 40 per-fibre synaptic currents summed by ``np.sum``) repeat lauscher's
    floating-point operations in lauscher's order, vectorised over channels,
    so they are bitwise equal given equal inputs. The membrane's transfer
    function is the same formula written once (agreeing with lauscher's to
    ~1e-14 relative): probabilities stay within a few ulp of lauscher's, so a
    draw could flip only with probability ~1e-9 per 0.1 s of audio. Exact mode
    costs seconds per 0.1 s of audio: it is for validation.

``mode="fast"``
    The same model, statistically equivalent and cheap (the random draws
    differ, so spikes agree in distribution, not one by one):

    * the membrane's transfer function is tabulated once per channel count
      (about 2.5 s, 50 MB) on per-channel frequency grids fine enough for a
      relative error below ~2e-6 with cubic Lagrange interpolation, and dropped
      where its magnitude is below 1e-8 (above each channel's characteristic
      frequency, where it falls steeply); a clip's membrane is then one sparse
      product and one real inverse FFT per 32 channels, in single precision.
      Clips whose ``M`` has a prime factor above 11, or longer than ``_SEGMENT``
      outputs (0.68 s), are computed in windows of their periodic continuation
      (see :class:`_Membrane`; shorter ones for the channels whose kernels
      reach less far): lauscher's wrap-around is kept, its time axis is matched
      to within about one 48 kHz sample;
    * one loop over 24 kHz samples advances, for all channels at once, the hair
      cell (double precision; its clamps at zero can never bind at 24 kHz and
      the ``q < m`` replenishment branch is checked, the steps redone with it if
      it were ever taken) and the bushy cells (the 40 synaptic currents are
      linear, so their sum is one current driven by the fibres' spike count):
      six array operations per sample on one state of seven rows, scaled so
      that every coupling has coefficient 1 (see :class:`_Pipeline`);
    * fibre spikes have lauscher's law: every fibre and sample is an
      independent Bernoulli(p) candidate, drawn sparsely (Poisson points of a
      dominating hazard, thinned; exact up to single-precision rounding of the
      cleft contents and the thinning threshold, ~1e-7 relative), and a fibre's
      candidate is kept when its last kept spike is at least 24 samples (1 ms)
      earlier, as lauscher's ``_correct`` does; each channel's fibres (up to 64)
      are the bits of one word, so availability costs three bitwise operations
      per sample (more fibres take a sorted, vectorised thinning).

    Memory is bounded for any clip length: the membrane is held one segment at
    a time (16384 x 700 float32), everything else per chunk of 2048 samples;
    no channels x samples x fibres array exists (about 235 MB peak for a 3 s
    clip, 100 MB of which are numpy and scipy).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from numbers import Integral, Real

import numpy as np
import scipy.sparse as sparse
from scipy import fft as sp_fft
from scipy import signal, special

__all__ = ["cochlea_spikes", "preprocess", "resample_to_target", "membrane_velocity",
           "hair_cell", "TARGET_RATE", "MODEL_RATE", "MODES", "WINDOWS"]

TARGET_RATE = 48_000           # audio rate the model is run at (SHD's)
MODEL_RATE = TARGET_RATE // 2  # lauscher's membrane / hair cell / bushy cell rate
MODES = ("fast", "exact")
WINDOWS = ("hann", "ramp")

RMS_LEVEL = 0.3

# Basilar membrane (lauscher defaults; Sieroka, Dosch and Rupp 2006).
BM_CMAX = 3.5
BM_A = 3500.0
BM_ALPHA = 3.0
BM_RHO = 1.0
BM_C0 = 10e8
BM_DE = 0.15
BM_H = 0.1
BM_M = 0.05
BM_R = BM_DE * np.sqrt(BM_C0 * BM_M)

# Inner hair cell (lauscher defaults; Meddis 1986, 1988).
HC_Y = 5.05
HC_G = 2000.0
HC_L = 2500.0
HC_R = 6580.0
HC_X = 66.3
HC_A = 5.0
HC_B = 300.0
HC_H = 50000.0
HC_M = 1.0

# Bushy cell (lauscher defaults).
BC_TAU_MEM = 1e-3
BC_TAU_SYN = 5e-4
BC_TAU_REFRAC = 1e-3
BC_WEIGHT = 13e3

# Fast-mode numerics.
_V_CUTOFF = 1e-8        # |V| below this (above the characteristic frequency) is dropped
_DELTA_MAX_HZ = 6.0     # coarsest master-grid spacing of the transfer function
_DELTA_PER_CF = 0.0025  # master-grid spacing as a fraction of the characteristic frequency
_SEGMENT = 16384        # fast mode: membrane outputs per segment (bounds memory)
_PAD_BEFORE = 480       # fast mode: periodic continuation before the clip (samples at 48 kHz)
_PAD_AFTER = 7200       # ... and after it (the kernel's reach into the future)
_PAD_SHORT = 1600       # ... for the groups of channels whose kernels reach at most this far
_TIME_CHUNK = 2048      # samples (at 24 kHz) per chunk in fast mode
_FIBRE_BLOCK = 64       # samples per block of the dominating hazard (a power of 2, < 2**16)
_EXACT_CHUNK_BYTES = 64 << 20
_BM_BLOCK = 32          # channels per inverse FFT in fast mode

# np.putmask without its __array_function__ dispatch (called once per sample in fast mode).
_putmask = getattr(np.putmask, "_implementation", np.putmask)


# ----------------------------------------------------------------------------- validation

def _check_audio(audio) -> np.ndarray:
    arr = np.asarray(audio)
    if arr.dtype.kind not in "biuf":
        raise ValueError(f"Audio must be real numbers, not dtype {arr.dtype}")
    if arr.ndim != 1:
        raise ValueError(f"Audio must be mono, a 1-D array of samples, not an array of shape "
                         f"{arr.shape} (mix stereo down or pick a channel first)")
    if arr.size == 0:
        raise ValueError("Audio is empty (0 samples)")
    arr = arr.astype(np.float64)
    bad = ~np.isfinite(arr)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"Audio has {int(bad.sum())} non-finite samples (first at index {i}: "
                         f"{arr[i]!r})")
    if not np.any(arr):
        raise ValueError("Audio is silent (all samples 0): RMS normalisation is undefined")
    return arr


def _check_rate(sample_rate) -> int:
    if isinstance(sample_rate, (bool, np.bool_)) or not isinstance(sample_rate, Real):
        raise ValueError(f"Sample rate must be a positive integer in Hz, not {sample_rate!r}")
    if not (math.isfinite(float(sample_rate)) and float(sample_rate) > 0
            and float(sample_rate) == int(sample_rate)):
        raise ValueError(f"Sample rate must be a positive integer in Hz, not {sample_rate!r}")
    return int(sample_rate)


def _check_positive_int(name: str, value) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, Integral) or value < 1:
        raise ValueError(f"{name} must be a positive integer, not {value!r}")
    return int(value)


# ----------------------------------------------------------------------------- preprocessing

def resample_to_target(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """Mono audio at ``sample_rate`` -> float64 at 48 kHz (``resample_poly``; a copy)."""
    audio = _check_audio(audio)
    sample_rate = _check_rate(sample_rate)
    if sample_rate == TARGET_RATE:
        return audio.copy()
    g = math.gcd(TARGET_RATE, sample_rate)
    return signal.resample_poly(audio, TARGET_RATE // g, sample_rate // g).astype(np.float64)


def preprocess(audio48: np.ndarray, window: str = "hann", ramp_ms: float = 10.0) -> np.ndarray:
    """48 kHz audio -> RMS-normalised (0.3) and windowed copy, as lauscher's first two steps.

    ``"hann"`` is lauscher's ``HanningWindow()``: ``np.hanning(2 * (N // 2))`` split
    at its middle over the first and last ``N // 2`` samples. ``"ramp"`` is
    ``HanningWindow(ramp_ms / 1e3, ramp_ms / 1e3)``: the same raised cosine over
    ``round(ramp_ms * 48)`` samples at each end (at most half the clip each).
    """
    if window not in WINDOWS:
        raise ValueError(f"Window must be one of {WINDOWS}, not {window!r}")
    ramp_ms = _check_ramp(ramp_ms)
    x = np.array(audio48, dtype=np.float64)  # copy
    x *= RMS_LEVEL / np.sqrt(np.mean(x ** 2))
    n = x.size
    if window == "hann":
        half = n // 2
    else:
        half = min(int(round((ramp_ms / 1000.0) * TARGET_RATE)), n // 2)
    if half > 0:
        ramp = np.hanning(half * 2)[:half]
        x[:half] = ramp * x[:half]
        x[-half:] = ramp[::-1] * x[-half:]
    return x


def _check_ramp(ramp_ms) -> float:
    if isinstance(ramp_ms, (bool, np.bool_)) or not isinstance(ramp_ms, Real) \
            or not math.isfinite(float(ramp_ms)) or ramp_ms < 0:
        raise ValueError(f"ramp_ms must be a finite number >= 0, not {ramp_ms!r}")
    return float(ramp_ms)


# ----------------------------------------------------------------------------- basilar membrane

def _places(channels: int) -> np.ndarray:
    return np.linspace(0, BM_CMAX, channels)


def _transfer(omega: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Membrane velocity per unit stimulus, ``V(omega, c)``: ``[len(c), len(omega)]`` complex.

    Sieroka et al. (2006) as in lauscher: stiffness ``s(c) = c0 exp(-alpha c) - a``,
    damping ``r(c) = r exp(-alpha c / 2)``, ``xi = s - m w^2 - i w r``, the WKB-like
    pressure ``P = sqrt(G / g) H0(G)`` and the input impedance ``Z(w)`` of the stapes.
    """
    w = np.asarray(omega, dtype=np.float64)[None, :]
    c = np.asarray(c, dtype=np.float64)[:, None]
    stiff = BM_C0 * np.exp(-BM_ALPHA * c) - BM_A
    damp = BM_R * np.exp(-BM_ALPHA * c / 2.0)
    xi = stiff - BM_M * w ** 2 - 1j * w * damp
    xi0 = (BM_C0 - BM_A) - BM_M * w ** 2 - 1j * w * BM_R
    g = w * np.sqrt(BM_RHO / (BM_H * xi))
    g0 = w * np.sqrt(BM_RHO / (BM_H * xi0))
    root = np.sqrt(BM_A + BM_M * w ** 2)
    num = -BM_ALPHA * np.sqrt(xi0) + 1j * BM_ALPHA * (2.0 * BM_A + w * (2.0 * BM_M * w + 1j * BM_R)) \
        / (2.0 * root)
    den = 0.5 * BM_ALPHA * np.exp(BM_ALPHA * c / 2.0) \
        * (-2.0 * np.sqrt(xi) + 1j * (2.0 * BM_A + w * (2.0 * BM_M * w + 1j * damp)) / root)
    big_g = 2.0 * g0 / BM_ALPHA \
        - 2j * np.sqrt(2.0) * w * np.log(num / den) / (BM_ALPHA * np.sqrt(2.0 * BM_H * (BM_M * w ** 2 + BM_A)))
    big_g0 = 2.0 * g0 / BM_ALPHA
    pressure = np.sqrt(big_g / g) * special.hankel1(0, big_g)
    pressure0 = np.sqrt(big_g0 / g0) * special.hankel1(0, big_g0)
    u = 2.0 * w / BM_ALPHA * np.sqrt(2.0 / (BM_H * BM_C0))
    stapes = np.sqrt(2.0 * BM_C0 / BM_H) * (1j * special.j0(u) + special.y0(u)) \
        / (special.j1(u) - 1j * special.y1(u))
    return 2.0 * w / xi * pressure * stapes / pressure0


def _bm_grid(n: int) -> np.ndarray:
    """lauscher's angular frequencies for ``n`` bins: ``2 pi linspace(1, 24000, n)``."""
    return 2 * np.pi * np.linspace(1, MODEL_RATE, n)


def _characteristic_hz(c: np.ndarray) -> np.ndarray:
    stiff = np.maximum(BM_C0 * np.exp(-BM_ALPHA * np.asarray(c, dtype=np.float64)) - BM_A, 1.0)
    return np.sqrt(stiff / BM_M) / (2 * np.pi)


def _membrane_exact(x: np.ndarray, places: np.ndarray):
    """Yield ``(lo, hi, velocity [hi - lo, M] float64)`` per chunk of channels, as lauscher."""
    n_bins = x.size // 2 + 1
    omega = _bm_grid(n_bins)
    stim = np.fft.fft(x)[:n_bins]
    step = max(1, _EXACT_CHUNK_BYTES // (16 * 12 * n_bins))
    for lo in range(0, places.size, step):
        hi = min(places.size, lo + step)
        yield lo, hi, np.real(np.fft.ifft(_transfer(omega, places[lo:hi]) * stim[None, :], axis=1))


@dataclass
class _BMGroup:
    lo: int            # channels [lo, hi)
    hi: int
    delta: float       # master grid spacing (Hz) in lauscher's frequency f' = omega / 2 pi
    f_hi: float        # V is dropped above f' = f_hi
    blocks: tuple      # [2 G, <= _BM_BLOCK] complex64 per block of channels: V at f' = 1 + j delta,
                       # then its conjugate
    reach: int = 0     # input samples (48 kHz) that its kernels reach into the future (see
                       # _future_reach)

    @property
    def size(self) -> int:
        return self.blocks[0].shape[0] // 2


@lru_cache(maxsize=4)
def _bm_tables(channels: int) -> tuple[_BMGroup, ...]:
    """Master grids of the transfer function for fast mode (about 2 s for 700 channels)."""
    places = _places(channels)
    cf = _characteristic_hz(places)
    f_hi = np.empty(channels)
    for i, (c, f0) in enumerate(zip(places, cf)):
        probe = f0 * 2.0 ** (np.arange(0, 160) / 8.0)
        probe = np.append(probe[probe < MODEL_RATE], float(MODEL_RATE))
        mag = np.abs(_transfer(2 * np.pi * probe, [c])[0])
        above = np.flatnonzero(~(mag < _V_CUTOFF))
        f_hi[i] = probe[min(above[-1] + 1, probe.size - 1)] if above.size else probe[0]
    delta = np.minimum(_DELTA_MAX_HZ, _DELTA_PER_CF * cf)
    klass = np.ceil(np.log(_DELTA_MAX_HZ / delta) / np.log(np.sqrt(2.0)) - 1e-9).astype(int)
    groups = []
    lo = 0
    while lo < channels:
        hi = lo + 1
        while hi < channels and klass[hi] == klass[lo] and hi - lo < 256:
            hi += 1
        d = _DELTA_MAX_HZ * np.sqrt(2.0) ** (-klass[lo])
        fh = float(f_hi[lo:hi].max())
        size = int(math.ceil((fh - 1.0) / d)) + 4
        freqs = 1.0 + d * np.arange(size)
        table = np.empty((2 * size, hi - lo), dtype=np.complex64)
        for a in range(lo, hi, 16):
            b = min(hi, a + 16)
            v = _transfer(2 * np.pi * freqs, places[a:b]).T
            table[:size, a - lo:b - lo] = v
            table[size:, a - lo:b - lo] = np.conj(v)
        blocks = tuple(np.ascontiguousarray(table[:, a:a + _BM_BLOCK]) for a in range(0, hi - lo, _BM_BLOCK))
        grp = _BMGroup(lo, hi, d, fh, blocks)
        grp.reach = _future_reach(grp)
        groups.append(grp)
        lo = hi
    return tuple(groups)


def _future_reach(grp: _BMGroup, level: float = 1e-3, m: int = 1 << 15) -> int:
    """How far (input samples at 48 kHz) the group's kernels reach into the future.

    The kernel of a channel is ``Re(ifft(V(f'_k)))`` over ``m`` outputs in
    lauscher's convention; output ``j`` takes the input ``L`` outputs later
    through its entry ``m - L``. Returns twice the largest ``L`` (below
    ``m / 2``) at which some channel's kernel is above ``level`` of its peak.
    """
    indptr, cols, weights, _ = _group_plan(grp, m)               # the stimulus is 1
    mat = sparse.csr_matrix((weights.astype(np.complex64), cols, indptr), shape=(m // 2 + 1, 2 * grp.size))
    reach = 0
    for block in grp.blocks:
        h = np.abs(sp_fft.irfft(mat @ block, n=m, axis=0))
        above = np.flatnonzero((h[m // 2:] > level * h.max(axis=0)).any(axis=1))
        if above.size:
            reach = max(reach, m - (m // 2 + int(above[0])))
    return 2 * reach


def _lagrange4(u: np.ndarray, size: int):
    """Cubic Lagrange stencil on a unit grid of ``size`` points: first index and 4 weights."""
    i0 = np.clip(np.floor(u).astype(np.int64) - 1, 0, size - 4)
    s = u - i0
    s1, s2, s3 = s - 1.0, s - 2.0, s - 3.0
    return i0, (-(s1 * s2 * s3) / 6.0, s * s2 * s3 / 2.0, -(s * s1 * s3) / 2.0, s * s1 * s2 / 6.0)


def _smooth(n: int, primes=(2, 3, 5, 7, 11)) -> bool:
    for p in primes:
        while n % p == 0:
            n //= p
    return n == 1


class _Velocity:
    """Time-major membrane velocity from blocks of channels, ``[rows, channels]``."""

    def __init__(self, blocks: list, offset: int, length: int, channels: int):
        self.blocks = blocks      # [(lo, hi, [rows, hi - lo] float32)]
        self.offset = offset      # row of each block that is sample 0
        self.length = length
        self.channels = channels

    @classmethod
    def from_array(cls, velocity: np.ndarray) -> "_Velocity":
        """From ``[samples, channels]``."""
        arr = np.ascontiguousarray(velocity, dtype=np.float32)
        return cls([(0, arr.shape[1], arr)], 0, arr.shape[0], arr.shape[1])

    def add_rows(self, a: int, b: int, shift, out: np.ndarray) -> None:
        """``out[:] = velocity[a:b] + shift`` (float32)."""
        for lo, hi, y in self.blocks:
            np.add(y[self.offset + a:self.offset + b], shift, out=out[:, lo:hi])

    def array(self) -> np.ndarray:
        out = np.empty((self.length, self.channels), dtype=np.float32)
        self.add_rows(0, self.length, np.float32(0), out)
        return out


@lru_cache(maxsize=24)
def _bm_plan(channels: int, m: int, which: tuple):
    """Sparse interpolation plans of the groups ``which`` for an ``m``-point inverse
    transform: ``(m // 2 + 1, ((group, *_group_plan(group, m)) for each))``. A clip
    takes two (see :meth:`_Membrane._segment`), hence room for 12 clip lengths."""
    groups = _bm_tables(channels)
    return m // 2 + 1, tuple((groups[g], *_group_plan(groups[g], m)) for g in which)


def _group_plan(grp: _BMGroup, m: int):
    """Sparse interpolation plan of one group for an ``m``-point inverse transform.

    The Hermitian spectrum handed to ``irfft`` is
    ``X_r = (Z_r + conj(Z_{(m - r) mod m})) / 2`` with ``Z_k = V(f'_k) S_k`` (so
    that ``irfft(X) == Re(ifft(Z))``) and ``V(f'_k)`` interpolated from the
    group's master grid with 4-point Lagrange weights; ``X = A @ [V; conj V]``
    with ``A`` sparse, row ``r`` holding the 4 entries for ``V`` around bin ``r``
    (``r < n_used``), then the 4 for ``conj V`` around bin ``(m - r) mod m`` (if
    that is ``< n_used``). Returns ``(indptr, indices, weights, source)``: entry
    ``i`` of ``A`` is ``weights[i] * [S; conj S][source[i]] / 2``.
    """
    spacing = (MODEL_RATE - 1.0) / (m - 1)
    half = m // 2 + 1
    tap = np.arange(4)
    size = grp.size
    n_used = min(m, int(math.floor((grp.f_hi - 1.0) / spacing)) + 1)
    i0, wts = _lagrange4(np.arange(n_used) * (spacing / grp.delta), size)
    wts = np.stack(wts, axis=1)
    direct = np.arange(min(n_used, half))                   # rows with V entries
    mirror = np.arange(max(1, m - n_used + 1), half)         # rows with conj V entries, and
    if n_used:                                               # row 0 (its own mirror)
        mirror = np.concatenate([[0], mirror])
    kf = (m - mirror) % m
    count = np.zeros(half, dtype=np.int64)
    count[direct] += 4
    count[mirror] += 4
    indptr = np.concatenate([[0], np.cumsum(count)])
    at_d = indptr[direct, None] + tap                        # positions in CSR order
    at_m = indptr[mirror, None] + 4 * (mirror < direct.size)[:, None] + tap
    nnz = int(indptr[-1])
    cols = np.empty(nnz, dtype=np.int32)
    weights = np.empty(nnz, dtype=np.float32)
    source = np.empty(nnz, dtype=np.int32)
    cols[at_d], cols[at_m] = i0[direct, None] + tap, size + i0[kf, None] + tap
    weights[at_d], weights[at_m] = wts[direct], wts[kf]
    source[at_d], source[at_m] = direct[:, None], m + kf[:, None]
    return indptr.astype(np.int32), cols, weights, source


class _Membrane(_Velocity):
    """Fast mode's membrane velocity, computed segment by segment as the rows are read.

    lauscher's membrane is ``Re(ifft(V(f'_k) S_k))`` over the whole clip: a
    circular convolution whose ``M = N // 2 + 1`` outputs span the clip's ``N``
    input samples (output ``j`` is at input time ``j N / M``), through a kernel
    that (in its sign convention) reaches ~0.15 s into the future for the apical
    channels and a little into the past. When the clip fits one segment and ``M``
    has no prime factor above 11, fast mode evaluates that formula as is.
    Otherwise (inverse transforms of lengths with large prime factors cost up to
    5x more; long clips would need memory in proportion) it evaluates the same
    formula on windows of the clip's periodic continuation, from ``_PAD_BEFORE``
    input samples before to at least ``_PAD_AFTER`` after the window's outputs
    (``_PAD_SHORT`` for the groups of channels whose kernels reach no further
    into the future, see :func:`_future_reach`: the basal and middle ones, two
    thirds of the channels), padded to lengths with prime factors 2, 3 and 5
    only, and cuts the outputs out. The continuation reproduces lauscher's
    wrap-around; what differs is the kernel beyond the padding (below 1e-3 of
    its peak) and the time axis: a window's outputs are ``N' / M'`` input
    samples apart instead of ``N / M``, which leaves them off lauscher's times
    by at most about one input sample (21 us; the windows are aligned at their
    middle with an exact fractional delay), and the basal channels' mix of each
    frequency with its mirror about 12 kHz (from taking the real part of a
    one-sided spectrum) beats differently.
    """

    def __init__(self, x: np.ndarray, channels: int):
        n = x.size
        self.x = x
        self.n = n
        super().__init__([], 0, n // 2 + 1, channels)
        self.rows = None
        self.first = self.last = 0            # outputs of the current segment
        self.whole = self.length <= _SEGMENT and self.length >= 2 and _smooth(self.length)

    def add_rows(self, a: int, b: int, shift, out: np.ndarray) -> None:
        while a < b:
            if not self.first <= a < self.last:
                self._segment(a)
            c = min(b, self.last)
            np.add(self.rows[a - self.first:c - self.first], shift, out=out[:c - a])
            out = out[c - a:]
            a = c

    def _segment(self, first: int) -> None:
        self.rows = None                      # free the previous segment first
        m_out = self.length
        groups = _bm_tables(self.channels)
        if self.whole:
            last = m_out
            windows = [(m_out, self.x, 0.0, 0, tuple(range(len(groups))))]
        else:
            # The groups whose kernels reach less far into the future take a shorter window.
            last = min(m_out, first + _SEGMENT)
            short = tuple(g for g, grp in enumerate(groups) if grp.reach <= _PAD_SHORT)
            rest = tuple(g for g in range(len(groups)) if g not in short)
            windows = [self._window(first, last, pad, which)
                       for pad, which in ((_PAD_SHORT, short), (_PAD_AFTER, rest)) if which]
        rows = np.empty((last - first, self.channels), dtype=np.float32)
        for m, window, delay, offset, which in windows:
            half_stim = 0.5 * sp_fft.rfft(window)          # == np.fft.fft(window)[:m] / 2
            if delay:
                half_stim *= np.exp(-2j * np.pi * delay / window.size * np.arange(half_stim.size))
            both = np.concatenate([half_stim, np.conj(half_stim)]).astype(np.complex64)
            half, plans = _bm_plan(self.channels, m, which)
            for grp, indptr, indices, weights, source in plans:
                stim = np.take(both, source)
                stim *= weights
                mat = sparse.csr_matrix((stim, indices, indptr), shape=(half, 2 * grp.size))
                del stim
                lo = grp.lo
                for block in grp.blocks:
                    hi = lo + block.shape[1]
                    rows[:, lo:hi] = sp_fft.irfft(mat @ block, n=m, axis=0)[offset:offset + last - first]
                    lo = hi
        self.rows, self.first, self.last = rows, first, last

    def _window(self, first: int, last: int, pad_after: int, which: tuple):
        """The window of the periodic continuation for outputs ``[first, last)``, from
        ``_PAD_BEFORE`` input samples before them to at least ``pad_after`` after:
        ``(m, window, delay, offset, which)`` (see the class docstring)."""
        n, m_out = self.n, self.length
        step = n / m_out                  # lauscher's input samples per output
        middle = (first + last - 1) // 2
        start = int(math.floor(first * step)) - _PAD_BEFORE
        need = (last - 1) * step - start + pad_after + 1
        m = sp_fft.next_fast_len(int(math.ceil(need / 2)) + 1, real=True)
        window = self.x[np.arange(start, start + 2 * (m - 1)) % n]
        spacing = 2.0 * (m - 1) / m       # input samples per output of the window
        target = middle * step - start    # where lauscher's middle output is, in the window
        k_mid = int(round(target / spacing))
        delay = k_mid * spacing - target  # delay the window so that output k_mid lands there
        return m, window, delay, k_mid - (middle - first), which

    def array(self) -> np.ndarray:
        out = np.empty((self.length, self.channels), dtype=np.float32)
        self.add_rows(0, self.length, np.float32(0), out)
        return out


def _membrane_fast(x: np.ndarray, channels: int) -> _Membrane:
    """Membrane velocity (time-major, float32, read lazily), fast mode."""
    return _Membrane(x, channels)


def membrane_velocity(audio48: np.ndarray, *, mode: str = "fast", channels: int = 700,
                      window: str = "hann", ramp_ms: float = 10.0) -> np.ndarray:
    """Preprocessed basilar membrane velocity ``[channels, M]`` at 24 kHz (for inspection/tests)."""
    channels = _check_positive_int("channels", channels)
    x = preprocess(_check_audio(audio48), window, ramp_ms)
    if mode == "fast":
        return _membrane_fast(x, channels).array().T.astype(np.float64)
    if mode == "exact":
        return np.concatenate([v for _, _, v in _membrane_exact(x, _places(channels))], axis=0)
    raise ValueError(f"Mode must be one of {MODES}, not {mode!r}")


# ----------------------------------------------------------------------------- hair cell

@dataclass(frozen=True)
class _HairConstants:
    ymdt: float
    xdt: float
    ydt: float
    rdt: float
    gdt: float
    hdt: float
    lplusrdt: float
    q0: float
    c0: float
    w0: float


def _hair_constants(fs: int = MODEL_RATE) -> _HairConstants:
    # Same expressions as lauscher's HairCell._meddis.
    kt = HC_G * HC_A / (HC_A + HC_B)
    c0 = HC_M * HC_Y * kt / (HC_L * kt + HC_Y * (HC_L + HC_R))
    q0 = c0 * (HC_L + HC_R) / kt
    w0 = c0 * HC_R / HC_X
    return _HairConstants(HC_Y * HC_M / float(fs), HC_X / float(fs), HC_Y / float(fs),
                          HC_R / float(fs), HC_G / float(fs), HC_H / float(fs),
                          (HC_L + HC_R) / float(fs), q0, c0, w0)


def _hair_exact(bm: np.ndarray) -> np.ndarray:
    """Meddis hair cell with lauscher's operations, vectorised over channels: ``[nc, M]``."""
    k = _hair_constants()
    nc, n = bm.shape
    q = np.full(nc, k.q0)
    c = np.full(nc, k.c0)
    w = np.full(nc, k.w0)
    out = np.empty((nc, n))
    zero = np.zeros(nc)
    for j in range(n):
        b = bm[:, j] + HC_A
        kt = np.where(b > 0, k.gdt * b / (bm[:, j] + HC_A + HC_B), 0.0)
        replenish = np.where(q < HC_M, k.ymdt - k.ydt * q, 0.0)
        eject = kt * q
        reuptakeandloss = k.lplusrdt * c
        reuptake = k.rdt * c
        reprocess = k.xdt * w
        q = np.maximum(q + replenish - eject + reprocess, zero)
        c = np.maximum(c + eject - reuptakeandloss, zero)
        w = np.maximum(w + reuptake - reprocess, zero)
        out[:, j] = c * k.hdt
    return out


def hair_cell(velocity: np.ndarray, *, mode: str = "fast") -> np.ndarray:
    """Spike probability per fibre and 24 kHz sample, ``[channels, M]``, from a membrane velocity."""
    velocity = np.asarray(velocity, dtype=np.float64)
    if velocity.ndim != 2:
        raise ValueError(f"Velocity must be [channels, samples], not shape {velocity.shape}")
    if mode == "exact":
        return _hair_exact(velocity)
    if mode == "fast":
        k = _hair_constants()
        state = _HairState(velocity.shape[0], k)
        source = _Velocity.from_array(velocity.T)
        return np.concatenate([state.run(source, a, min(source.length, a + _TIME_CHUNK))
                               for a in range(0, source.length, _TIME_CHUNK)], axis=0).T * k.hdt
    raise ValueError(f"Mode must be one of {MODES}, not {mode!r}")


def _permeability(velocity, first: int, ns: int, k, z, den, kt, decay) -> None:
    """Hair-cell permeability ``k(t) dt`` of ``ns`` samples from ``first`` into
    ``kt[:ns]``, and ``1 - y dt - k(t) dt`` into ``decay[:ns]``, in lauscher's
    order of operations (float32 for the saturating ratio, as it computes it)."""
    zz = z[:ns]
    velocity.add_rows(first, first + ns, np.float32(HC_A), zz)
    _permeability_of(zz, den[:ns], k)
    kt[:ns] = zz
    np.subtract(np.float64(1.0 - k.ydt), zz, out=decay[:ns])


def _permeability_of(z: np.ndarray, den: np.ndarray, k) -> None:
    """``z = velocity + a`` (float32) -> ``k(t) dt`` (float32, in place); ``den`` is scratch."""
    np.maximum(z, 0, out=z)
    np.add(z, np.float32(HC_B), out=den)
    np.divide(z, den, out=z)
    np.multiply(z, k.gdt, out=z)


class _HairState:
    """Fast hair cell over time chunks, all channels at once.

    State rows ``[q, W = xdt w, c]``; one step is ``state * mult + add`` with
    ``mult = [1 - ydt - kt, 1 - xdt, 1 - (l + r) dt]`` and
    ``add = [W + y m dt, xdt rdt c, kt q]`` (lauscher's update without its clamps,
    which cannot bind, and without the ``q < m`` branch, which is checked).
    """

    SUB = 128  # steps per block of precomputed kt (kept in cache)

    def __init__(self, channels: int, k: _HairConstants):
        self.k = k
        self.state = np.array([np.full(channels, k.q0), np.full(channels, k.xdt * k.w0),
                               np.full(channels, k.c0)])

    def run(self, velocity: _Velocity, first: int, last: int) -> np.ndarray:
        """Samples ``[first, last)`` of ``velocity`` -> cleft contents ``c [T, channels]`` (float64)."""
        k = self.k
        steps, nc = last - first, velocity.channels
        sub = self.SUB
        xr = k.xdt * k.rdt
        cleft = np.empty((steps, nc))
        mult = np.empty((sub, 3, nc))
        mult[:, 1] = 1.0 - k.xdt
        mult[:, 2] = 1.0 - k.lplusrdt
        kt = np.empty((sub, nc))
        z = np.empty((sub, nc), dtype=np.float32)
        den = np.empty((sub, nc), dtype=np.float32)
        buf = np.empty((sub, 3, nc))
        add = np.empty((3, nc))
        prev = self.state
        for a in range(0, steps, sub):
            ns = min(sub, steps - a)
            _permeability(velocity, first + a, ns, k, z, den, kt, mult[:, 0])
            start = prev
            for i in range(ns):
                np.add(prev[1], k.ymdt, out=add[0])
                np.multiply(prev[2], xr, out=add[1])
                np.multiply(kt[i], prev[0], out=add[2])
                cur = buf[i]
                np.multiply(prev, mult[i], out=cur)
                cur += add
                prev = cur
            if np.any(start[0] >= HC_M) or np.any(buf[:ns - 1, 0] >= HC_M):
                raw = np.empty((ns, nc), dtype=np.float32)
                velocity.add_rows(first + a, first + a + ns, np.float32(0), raw)
                self._run_branching(raw, start, buf)
                prev = buf[ns - 1]
            cleft[a:a + ns] = buf[:ns, 2]
            prev = prev.copy()
        self.state = prev
        return cleft

    def _run_branching(self, velocity: np.ndarray, s0: np.ndarray, buf: np.ndarray,
                       scale: float = 1.0) -> None:
        """The same steps with lauscher's replenishment branch (taken only when ``q >= m``).

        Rows ``[q, W]`` of ``s0`` and ``buf`` are multiplied by ``scale`` (see :class:`_Pipeline`).
        """
        k = self.k
        q, c, w = s0[0] / scale, s0[2].copy(), s0[1] / (scale * k.xdt)
        for t in range(velocity.shape[0]):
            b = velocity[t].astype(np.float64) + HC_A
            kt = np.where(b > 0, k.gdt * b / (b + HC_B), 0.0)
            replenish = np.where(q < HC_M, k.ymdt - k.ydt * q, 0.0)
            eject = kt * q
            q, c, w = (np.maximum(q + replenish - eject + k.xdt * w, 0.0),
                       np.maximum(c + eject - k.lplusrdt * c, 0.0),
                       np.maximum(w + k.rdt * c - k.xdt * w, 0.0))
            buf[t, 0], buf[t, 1], buf[t, 2] = q * scale, k.xdt * w * scale, c


# ----------------------------------------------------------------------------- bushy cells, exact

def _bushy_exact(prob: np.ndarray, draw, fibres: int) -> np.ndarray:
    """lauscher's ``BushyCell`` for a chunk of channels: ``prob [nc, M]`` -> spikes ``[nc, M]`` bool.

    ``draw(shape)`` must return uniform doubles; it is called once per channel, in order.
    """
    fs = MODEL_RATE
    nc, n = prob.shape
    refrac = BC_TAU_REFRAC * fs
    cand = np.empty((nc, n, fibres), dtype=bool)
    for i in range(nc):
        cand[i] = draw((n, fibres)) < prob[i][:, None]
    # BushyCell._correct: per fibre, drop spikes closer than refrac to the last kept one.
    last = np.full((nc, fibres), -refrac)
    for j in range(n):
        row = cand[:, j, :]
        if row.any():
            row &= ~(j - last < refrac)
            last[row] = j
    # BushyCell._lif, vectorised over channels with the same per-fibre operations.
    dt = 1 / float(fs)
    decay_mem = np.exp(-dt / BC_TAU_MEM)
    decay_syn = np.exp(-dt / BC_TAU_SYN)
    weight = BC_WEIGHT / float(fibres)
    vm_prev = np.zeros(nc)
    counter = np.zeros(nc)
    isyn = np.zeros((nc, fibres))
    spikes = np.zeros((nc, n), dtype=bool)
    for step in range(n):
        vm = np.zeros(nc)
        if step > 0:
            ready = counter <= 0
            below = vm_prev < 1.0
            decay = ready & below
            vm[decay] = vm_prev[decay] * decay_mem
            fire = ready & ~below
            counter[fire] = refrac
            spikes[fire, step - 1] = True
            isyn = isyn * decay_syn
        isyn += cand[:, step, :]
        ready = counter <= 0
        vm[ready] += np.sum(isyn, axis=1)[ready] * weight * dt
        vm[vm > 1.0] = 1.0
        counter -= 1
        vm_prev = vm
    return spikes


def _exact(x: np.ndarray, channels: int, fibres: int, draw) -> np.ndarray:
    spikes = np.zeros((x.size // 2 + 1, channels), dtype=bool)
    for lo, hi, velocity in _membrane_exact(x, _places(channels)):
        prob = _hair_exact(velocity)
        del velocity
        step = max(1, _EXACT_CHUNK_BYTES // (prob.shape[1] * fibres))
        for a in range(0, hi - lo, step):
            b = min(hi - lo, a + step)
            spikes[:, lo + a:lo + b] = _bushy_exact(prob[a:b], draw, fibres).T
    return spikes


# ----------------------------------------------------------------------------- bushy cells, fast

def _candidates(cleft: np.ndarray, hdt: float, fibres: int, rng: np.random.Generator):
    """Bernoulli(p = hdt c) candidates of every fibre and sample, drawn sparsely and exactly.

    The samples are cut into blocks of ``_FIBRE_BLOCK`` samples of one channel. In
    a block, Poisson points of rate ``lam_max = -log(1 - p_max)`` per fibre-sample
    (``p_max`` the block's largest ``p``) are thinned to rate ``lam = -log(1 - p)``
    (each kept with probability ``lam / lam_max``); a fibre-sample is a candidate
    when it keeps at least one point, which has probability ``1 - exp(-lam) = p``,
    independently of all others. Each point takes one 64-bit draw: its sample in
    the block (the ``log2(_FIBRE_BLOCK)`` bits from bit 32 on), its thinning
    level (the bits above) and, if kept, its fibre (``fibres`` times the low 32
    bits, over ``2**32``). ``cleft`` may be single precision (the thinning
    compares in single precision). Returns
    ``(cell, fibre)`` with ``cell = t * n + ch`` (int64) and ``fibre`` (uint64),
    unsorted: one cell may come several times, one fibre-sample too.
    """
    steps, n = cleft.shape
    blk, f = _FIBRE_BLOCK, fibres
    shift = 32 + blk.bit_length() - 1             # the level's bits start here
    nb = -(-steps // blk)
    padded = nb * blk != steps
    if padded:
        cleft = np.concatenate([cleft, np.zeros((nb * blk - steps, n), dtype=cleft.dtype)])
    flat = cleft.ravel()
    cmax = np.max(cleft.reshape(nb, blk, n), axis=1).ravel().astype(np.float64)
    pmax = np.minimum(cmax * hdt, 1.0 - 1e-12)
    lam_max = -np.log1p(-pmax)
    counts = rng.poisson(lam_max * float(blk * f))
    base = (np.arange(nb)[:, None] * (blk * n) + np.arange(n)[None, :]).ravel()
    cell = np.repeat(base, counts)
    # lam_max in units of c, over 2**(64 - shift): times the level's bits of a draw,
    # u lam_max / hdt with u uniform in [0, 1).
    level = np.repeat((lam_max * (1.0 / (hdt * 2.0 ** (64 - shift)))).astype(np.float32), counts)
    raw = rng.bit_generator.random_raw(cell.size)
    cell += ((raw >> np.uint64(32)) & np.uint64(blk - 1)).view(np.int64) * n    # sample in block
    level *= (raw >> np.uint64(shift)).astype(np.float32)
    c = np.take(flat, cell)
    if c.dtype != np.float32:
        c = c.astype(np.float32)
    # Keep a point when u lam_max < lam(p); p <= lam(p) <= p / (1 - p) decides almost all.
    # (Selections go through np.flatnonzero and np.take: much faster than boolean indexing.)
    keep = level < c
    unsure = np.flatnonzero(~keep)
    p = np.take(c, unsure) * np.float32(hdt)
    unsure = np.take(unsure, np.flatnonzero(np.take(level, unsure) * np.float32(hdt) * (1 - p) < p))
    if unsure.size:
        p = np.take(flat, np.take(cell, unsure)).astype(np.float64) * hdt
        keep[unsure] = np.take(level, unsure).astype(np.float64) * hdt \
            < -np.log1p(-np.minimum(p, 1.0 - 1e-12))
    if padded:                                            # drop the padding of a last partial block
        keep &= cell < steps * n
    kept = np.flatnonzero(keep)
    cell, raw = np.take(cell, kept), np.take(raw, kept)
    return cell, ((raw & np.uint64(0xFFFFFFFF)) * np.uint64(f)) >> np.uint64(32)  # fibre in [0, f)


class _Fibres:
    """Refractory fibres as bit masks (``fibres <= 64``): one bit per fibre, one word per channel.

    A candidate is kept when its fibre is available; a kept spike makes the
    fibre unavailable for ``refrac`` samples, i.e. lauscher's ``_correct``
    (keep when at least ``refrac`` samples after the last kept spike). The
    candidates' masks are laid out ``ROWS`` samples at a time (so that they stay
    in cache), three bitwise operations per sample.
    """

    ROWS = 256      # a multiple of _FIBRE_BLOCK

    def __init__(self, channels: int, fibres: int, rng, hdt: float):
        self.n, self.f, self.rng, self.hdt = channels, fibres, rng, hdt
        self.refrac = int(round(BC_TAU_REFRAC * MODEL_RATE))
        self.avail = np.full(channels, (1 << fibres) - 1, dtype=np.uint64)
        self.hist = np.zeros((self.refrac, channels), dtype=np.uint64)
        self.cand = np.empty((self.ROWS, channels), dtype=np.uint64)
        self.cand_rows = list(self.cand)
        self.masks = None                                 # kept masks, one chunk at a time

    def run(self, cleft: np.ndarray) -> np.ndarray:
        """``c [T, n]`` -> kept spikes per channel and sample ``[T, n]`` (uint8)."""
        steps, n = cleft.shape
        r, rows = self.refrac, self.ROWS
        if self.masks is None or self.masks.shape[0] < r + steps:
            self.masks = np.empty((r + steps, n), dtype=np.uint64)
            self.mask_rows = list(self.masks)
        kept, kept_rows, cand, cand_rows = self.masks, self.mask_rows, self.cand.ravel(), self.cand_rows
        cell, fib = _candidates(cleft, self.hdt, self.f, self.rng)
        bits = np.left_shift(np.uint64(1), fib)
        # The candidates come block by block of _FIBRE_BLOCK samples, so those of samples
        # [a, b) are one slice (for a, b multiples of the block).
        starts = np.arange(0, steps, rows)
        ends = np.searchsorted(cell, np.append(starts, steps) * n)
        kept[:r] = self.hist
        av = self.avail
        or_, and_, xor_ = np.bitwise_or, np.bitwise_and, np.bitwise_xor
        for a, lo, hi in zip(starts, ends[:-1], ends[1:]):
            b = min(steps, a + rows)
            at, more = cell[lo:hi] - a * n, bits[lo:hi]
            cand[:(b - a) * n] = 0
            cand[at] = more
            lost = np.flatnonzero(cand[at] != more)       # several fibres of one cell
            if lost.size:
                order = np.argsort(at[lost], kind="stable")
                cells, more = at[lost][order], more[lost][order]
                first = np.concatenate([[0], np.flatnonzero(cells[1:] != cells[:-1]) + 1])
                cand[cells[first]] |= np.bitwise_or.reduceat(more, first)
            for back, row, new in zip(kept_rows[a:b], kept_rows[r + a:r + b], cand_rows):
                or_(av, back, av)                         # back after the refractory period
                and_(new, av, row)
                xor_(av, row, av)
        self.hist = kept[steps:steps + r].copy()
        self.kept = kept[r:r + steps]                     # the last chunk's masks, for inspection
        return np.bitwise_count(self.kept)


class _FibresSorted:
    """The same for any number of fibres: candidates sorted per fibre, greedy dead time."""

    def __init__(self, channels: int, fibres: int, rng, hdt: float):
        self.n, self.f, self.rng, self.hdt = channels, fibres, rng, hdt
        self.refrac = int(round(BC_TAU_REFRAC * MODEL_RATE))
        self.last = np.full(channels * fibres, -self.refrac, dtype=np.int64)  # last kept spike
        self.t0 = 0

    def run(self, cleft: np.ndarray) -> np.ndarray:
        steps, n = cleft.shape
        cell, fib = _candidates(cleft, self.hdt, self.f, self.rng)
        t, ch = np.divmod(cell, n)
        fid = ch * self.f + fib.astype(np.int64)
        order = np.lexsort((t, fid))                    # per fibre, in time order
        fid, tg, ch = fid[order], t[order] + self.t0, ch[order]
        dup = np.zeros(fid.size, dtype=bool)            # a fibre-sample hit twice is one candidate
        dup[1:] = (fid[1:] == fid[:-1]) & (tg[1:] == tg[:-1])
        fid, tg, ch = fid[~dup], tg[~dup], ch[~dup]
        kept = self._thin(fid, tg)
        counts = np.bincount((tg[kept] - self.t0) * n + ch[kept], minlength=steps * n)
        self.t0 += steps
        return counts.reshape(steps, n)

    def _thin(self, fid: np.ndarray, t: np.ndarray) -> np.ndarray:
        r = self.refrac
        size = t.size
        if size == 0:
            return np.zeros(0, dtype=bool)
        new = np.ones(size, dtype=bool)
        new[1:] = fid[1:] != fid[:-1]
        gap = np.empty(size, dtype=np.int64)
        gap[1:] = t[1:] - t[:-1]
        gap[new] = t[new] - self.last[fid[new]]
        kept = gap >= r                     # certain: the last kept spike is at least as far back
        pending = ~new & ~kept              # depends on whether the previous candidate was kept
        lk = np.where(kept, t, 0)           # last kept time up to and including each candidate
        lk[new & ~kept] = self.last[fid[new & ~kept]]
        front = np.flatnonzero(pending[1:] & ~pending[:-1]) + 1
        while front.size:                   # walk the runs of close candidates
            before = lk[front - 1]
            ok = t[front] - before >= r
            kept[front] = ok
            lk[front] = np.where(ok, t[front], before)
            nxt = front + 1
            nxt = nxt[nxt < size]
            front = nxt[pending[nxt]]
        ends = np.ones(size, dtype=bool)
        ends[:-1] = new[1:]
        self.last[fid[ends]] = lk[ends]
        return kept


class _Pipeline:
    """Fast mode's time loop: hair cells, fibres and bushy cells over chunks of samples.

    The hair cell of chunk ``j`` and the bushy cells of chunk ``j - 1`` (whose
    fibre spikes are drawn in between, vectorised over the chunk) advance in the
    same loop, one state of seven rows for all channels,
    ``[Q = q / xr, W = xdt w / xr, c, X, v, J, N]`` with ``xr = xdt rdt``: hair
    cell (``X = xr k(t) dt Q`` is the step's ejection), bushy cell membrane
    ``v``, its synaptic current one step ahead ``J(t) = I(t + 1)`` (the sum of
    the fibres' currents, which are linear) and the fibre spikes two steps
    ahead ``N(t) = n(t + 2)``, filled in beforehand. So scaled, every coupling
    between rows has coefficient 1 and a step is::

        X        = kx(t) Q             # kx = xr k(t) dt
        new[:6]  = state[:6] * mult(t) # [1 - ydt - k(t) dt, 1 - xdt, 1 - (l + r) dt, 0, d_mem, d_syn]
        new[:6] += state[1:]           # Q += W, W += c, c += X, (X: scratch), v += J, J += N
        new[0]  += y m dt / xr

    that is lauscher's hair cell without its clamps, which cannot bind at
    24 kHz (every update is a convex combination plus non-negative terms), and
    without the ``q < m`` branch, which is checked (the steps are redone with it
    if it is ever taken); and the bushy cell ``I = d_syn I + n``,
    ``v = d_mem v + I`` in units of one fibre spike (threshold
    ``1 / (weight dt)``). A cell that reaches the threshold is held far below
    it and ``r + 1`` steps later restarted from 0 (its ``d_mem`` multiplier is
    then 0), which is lauscher's ``_lif`` (whose membrane is 0 during the
    refractory period); these multipliers are filled ``r + 1`` steps at a time
    from the spikes already found. Every operation writes into preallocated
    buffers (``SUB`` steps' worth, small enough to stay in cache) through views
    made once; the cleft contents go to the fibres in single precision.
    """

    BIG = 1e10
    SUB = 50        # steps per block of precomputed inputs (kept small for the caches)
    STAGE = 250     # steps of membrane velocity read at a time (a multiple of SUB)

    def __init__(self, channels: int, fibres: int, sampler):
        k = _hair_constants()
        self.k = k
        self.n = channels
        self.sampler = sampler            # .run(cleft [T, n]) -> fibre spikes [T, n]
        dt = 1 / float(MODEL_RATE)
        self.theta = 1.0 / (BC_WEIGHT / float(fibres) * dt)
        self.refrac = int(round(BC_TAU_REFRAC * MODEL_RATE))
        self.piece = self.refrac + 1      # steps whose restarts follow from earlier spikes
        self.xr = k.xdt * k.rdt
        self.decay = (np.exp(-dt / BC_TAU_SYN), np.exp(-dt / BC_TAU_MEM))
        self.state = np.zeros((7, channels))
        self.state[0], self.state[1], self.state[2] = k.q0 / self.xr, k.xdt * k.w0 / self.xr, k.c0
        self.hist = np.zeros((self.piece, channels), dtype=bool)   # spikes of the last r + 1 steps
        # Buffers of one block of steps, and the views of them used at every step.
        sub, n = self.SUB, channels
        self.mult = np.empty((sub, 6, n))
        self.mult[:, 1], self.mult[:, 2], self.mult[:, 3] = 1.0 - k.xdt, 1.0 - k.lplusrdt, 0.0
        self.mult[:, 5] = self.decay[0]
        self.kx = np.empty((sub, n))
        self.buf = np.empty((sub, 7, n))                           # each step's new state
        self.stage = np.empty((self.STAGE, n), dtype=np.float32)   # velocity + a, read ahead
        self.den = np.empty((self.STAGE, n), dtype=np.float32)
        self.full, self.hair, self.lif = zip(*[self._views(b, m, kx)
                                               for b, m, kx in zip(self.buf, self.mult, self.kx)])
        self.fired_all = None                                      # spikes, one chunk at a time
        self.hot = False                                           # the last state had q >= m

    @staticmethod
    def _views(b, m=None, kx=None):
        """A step's views of its state ``b``, multipliers ``m`` and ``kx``: for a whole step
        (rows 0-5 and 1-6, Q, X, v), the hair cells alone (rows 0-3, 0-2, 1-3) and the
        bushy cells alone (rows 4-5 and 5-6, v)."""
        return ((b[:6], b[1:], b[0], b[3], b[4], m, kx),
                (b[:4], b[:3], b[1:4], b[0], b[3], None if m is None else m[:4], kx),
                (b[4:6], b[5:], b[4], None if m is None else m[4:6]))

    def run(self, velocity: _Velocity) -> tuple[np.ndarray, np.ndarray]:
        """All samples of ``velocity`` -> bushy cell spikes ``(sample, channel)``, sorted."""
        total = velocity.length
        counts, start = None, 0
        found = []
        for a in range(0, total, _TIME_CHUNK):
            b = min(total, a + _TIME_CHUNK)
            cleft = self._step(velocity, a, b, counts, start, found)
            del counts
            counts, start = self.sampler.run(cleft), a
            del cleft
        if counts is not None:
            self._step(None, 0, 0, counts, start, found)
        if not found:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        return np.concatenate([t for t, _ in found]), np.concatenate([c for _, c in found])

    def _step(self, velocity, first: int, last: int, counts, start: int, found: list) -> np.ndarray:
        """Hair cells over samples ``[first, last)`` while the bushy cells take ``counts``.

        The loop runs ``max(last - first, len(counts))`` steps: chunks have equal
        lengths but the last, so the hair cells run alone in the first call (the
        bushy cells have no input yet) and the bushy cells alone once the hair
        cells have run out; such steps update only their own rows.
        """
        k, n, sub, piece = self.k, self.n, self.SUB, self.piece
        xr, (d_syn, d_mem) = self.xr, self.decay
        steps = last - first
        lif_steps = 0 if counts is None else counts.shape[0]
        total = max(steps, lif_steps)
        prev = self.state
        if lif_steps:                         # the inputs that were not known in the last call
            prev[5] += counts[0]
            prev[6] = counts[1] if lif_steps > 1 else 0.0
        mult, kx, buf, stage, den = self.mult, self.kx, self.buf, self.stage, self.den
        staged = (0, 0)
        width = -(-n // 8) * 8                # rows padded to whole words for a fast nonzero
        if self.fired_all is None or self.fired_all.shape[0] < piece + total:
            self.fired_all = np.zeros((piece + total, width), dtype=bool)
            self.rows = list(self.fired_all[piece:, :n])
            self.cleft = np.empty((total, n), dtype=np.float32)   # for the fibres (float32)
        cleft = self.cleft[:steps]            # overwritten by the next call
        fired_all, rows = self.fired_all[:piece + total], self.rows
        fired_all[piece:] = False
        fired = fired_all[:, :n]
        fired[:piece] = self.hist if counts is not None else False
        full, hair, lif = self.full, self.hair, self.lif
        restart = mult[:, 4]
        theta, big, inflow = np.array(self.theta), np.array(-self.BIG), np.array(k.ymdt / xr)
        stay, scale = np.float64(1.0 - k.ydt), np.float64(xr)
        mul_, add_, ge_, put_ = np.multiply, np.add, np.greater_equal, _putmask
        q_max = HC_M / xr
        for a in range(0, total, sub):
            ns = min(sub, total - a)
            nh = max(0, min(ns, steps - a))   # steps with hair cells
            if nh:
                if a + nh > staged[1]:
                    staged = (a, min(steps, a + self.STAGE))
                    velocity.add_rows(first + a, first + staged[1], np.float32(HC_A),
                                      stage[:staged[1] - a])
                kt = stage[a - staged[0]:a - staged[0] + nh]
                _permeability_of(kt, den[:nh], k)         # k(t) dt, float32
                np.subtract(stay, kt, out=mult[:nh, 0])
                mul_(kt, scale, kx[:nh])
            if lif_steps:                     # N: the fibre spikes two steps ahead
                nl = max(0, min(ns, lif_steps - a - 2))
                buf[:nl, 6] = counts[a + 2:a + 2 + nl]
                buf[nl:ns, 6] = 0.0
            s0 = prev
            pf, ph, pl = self._views(prev)
            for p in range(0, ns, piece):
                e = min(ns, p + piece)
                mid = min(e, max(p, nh))      # steps [p, mid) with hair cells, [mid, e) without
                if p:
                    pf, ph, pl = full[p - 1], hair[p - 1], lif[p - 1]
                if lif_steps:
                    # v restarts from 0 at step t when its cell fired at step t - r - 1 (row t).
                    np.copyto(restart[p:e], d_mem)
                    np.copyto(restart[p:e], 0.0, where=fired[a + p:a + e])
                    s, s1, q0, x0 = pf[:4]
                    for (cur, cur1, q1, x1, v1, mi, ki), row in zip(full[p:mid], rows[a + p:a + mid]):
                        mul_(ki, q0, x0)                     # X = kx Q
                        mul_(s, mi, cur)
                        add_(cur, s1, cur)
                        add_(q1, inflow, q1)
                        ge_(v1, theta, row)
                        put_(v1, row, big)                   # held far below threshold meanwhile
                        s, s1, q0, x0 = cur, cur1, q1, x1
                    if mid < e:
                        s, s1 = (lif[mid - 1] if mid > p else pl)[:2]
                        for (cur, cur1, v1, mi), row in zip(lif[mid:e], rows[a + mid:a + e]):
                            mul_(s, mi, cur)
                            add_(cur, s1, cur)
                            ge_(v1, theta, row)
                            put_(v1, row, big)
                            s, s1 = cur, cur1
                else:
                    s, _, s1, q0, x0 = ph[:5]
                    for cur, cur3, cur1, q1, x1, mi, ki in hair[p:mid]:
                        mul_(ki, q0, x0)
                        mul_(s, mi, cur)
                        add_(cur3, s1, cur3)
                        add_(q1, inflow, q1)
                        s, s1, q0, x0 = cur, cur1, q1, x1
            # Redo the steps with lauscher's branch if a state they started from had q >= m
            # (s0 was the last state checked before).
            if nh and (self.hot or buf[:nh, 0].max() >= q_max):
                raw = np.empty((nh, n), dtype=np.float32)
                velocity.add_rows(first + a, first + a + nh, np.float32(0), raw)
                _HairState(n, k)._run_branching(raw, s0, buf, scale=1.0 / xr)
                self.hot = bool(buf[nh - 1, 0].max() >= q_max)
            elif nh:
                self.hot = False
            cleft[a:a + nh] = buf[:nh, 2]
            prev = buf[ns - 1].copy()
        if not lif_steps:
            prev[4:] = 0.0                    # the bushy cells, still at rest
        self.state = prev
        if counts is not None:
            block = fired_all[piece:piece + lif_steps]
            hit = np.flatnonzero(block.view(np.uint64).ravel())     # words with any spike
            if hit.size:
                t, c = np.nonzero(block.reshape(-1, 8)[hit])
                cell = hit[t] * 8 + c
                t, c = np.divmod(cell, width)
                found.append((t + start, c))
            self.hist = fired[lif_steps:lif_steps + piece].copy()
        return cleft


def _fast(x: np.ndarray, channels: int, fibres: int, rng) -> tuple[np.ndarray, np.ndarray]:
    velocity = _membrane_fast(x, channels)
    k = _hair_constants()
    sampler = (_Fibres if fibres <= 64 else _FibresSorted)(channels, fibres, rng, k.hdt)
    return _Pipeline(channels, fibres, sampler).run(velocity)


# ----------------------------------------------------------------------------- public API

def _draw_function(seed, rng):
    if rng is None:
        return np.random.RandomState(seed).random_sample
    if isinstance(rng, np.random.RandomState):
        return rng.random_sample
    if isinstance(rng, np.random.Generator):
        return rng.random
    raise ValueError(f"rng must be a numpy Generator or RandomState, not {type(rng).__name__}")


def cochlea_spikes(audio: np.ndarray, sample_rate: int, *, mode: str = "fast", seed: int | None = 0,
                   rng: np.random.Generator | None = None, channels: int = 700, fibres: int = 40,
                   window: str = "hann", ramp_ms: float = 10.0) -> tuple[np.ndarray, np.ndarray]:
    """mono float audio at any sample rate -> (spike times in seconds float64 [n], channel indices int [n]), sorted by time.

    Spikes at the same time are sorted by channel, as lauscher's ``SpikeTrain``;
    times are multiples of 1 / 24000 s. ``rng`` (a ``Generator`` or, in exact
    mode, also a ``RandomState``) takes precedence over ``seed``; exact mode
    seeds a legacy ``RandomState`` with ``seed`` (see the module docstring),
    fast mode a ``default_rng``.
    """
    if mode not in MODES:
        raise ValueError(f"Mode must be one of {MODES}, not {mode!r}")
    if window not in WINDOWS:
        raise ValueError(f"Window must be one of {WINDOWS}, not {window!r}")
    ramp_ms = _check_ramp(ramp_ms)
    channels = _check_positive_int("channels", channels)
    fibres = _check_positive_int("fibres", fibres)
    if seed is not None and (isinstance(seed, (bool, np.bool_)) or not isinstance(seed, Integral)
                             or seed < 0):
        raise ValueError(f"Seed must be None or a non-negative integer, not {seed!r}")
    x = preprocess(resample_to_target(audio, sample_rate), window, ramp_ms)
    if mode == "exact":
        t, ch = np.nonzero(_exact(x, channels, fibres, _draw_function(seed, rng)))
    else:
        if rng is None:
            rng = np.random.default_rng(seed)
        elif not isinstance(rng, np.random.Generator):
            raise ValueError(f"Fast mode needs rng to be a numpy Generator, not {type(rng).__name__}")
        t, ch = _fast(x, channels, fibres, rng)
    # lauscher's LIF loop reports a spike one step late, so never one at the last sample.
    keep = t < x.size // 2
    return t[keep] / MODEL_RATE, ch[keep].astype(np.int64)
