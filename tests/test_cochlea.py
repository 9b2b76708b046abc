"""The cochlea model (``delrec.golden.tasks.cochlea``) against lauscher 1.0.1, its reference.

Exact mode must equal lauscher spike for spike given the same random state;
fast mode must agree with exact mode stage by stage (deterministic stages to
~1e-6, bushy cells identically given the same fibre spikes, fibre spikes in
distribution). lauscher is a test dependency; it runs in pure Python (tens of
seconds for 20 ms at 700 channels), so the default tests use few channels or
single stages, and the 700-channel end-to-end comparisons are marked slow.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from scipy.signal import resample_poly

from delrec.golden.tasks import cochlea as co

FSDD = Path(__file__).resolve().parents[2] / "shared" / "data" / "fsdd"
RECORDINGS = FSDD / "recordings"
FS = co.TARGET_RATE


def _tone_noise(duration: float, seed: int = 1, f0: float = 1000.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(round(duration * FS))) / FS
    return np.sin(2 * np.pi * f0 * t) + 0.5 * np.sin(2 * np.pi * 180 * t) + 0.3 * rng.standard_normal(t.size)


def _smooth_length(duration: float) -> int:
    """An even length near ``duration`` whose ``N // 2 + 1`` has no prime factor above 11."""
    m = int(round(duration * FS)) // 2 + 1
    while not co._smooth(m):
        m += 1
    return 2 * (m - 1)


def _lauscher(x48: np.ndarray, *, channels: int, fibres: int = 40, seed: int = 0,
              ramp_s: float | None = None, stages: bool = False):
    """lauscher's Wave2Spike chain (with ``channels``/``fibres``/window options) after np.random.seed."""
    from lauscher.audiowaves import MonoAudioWave
    from lauscher.transformations import (BasilarMembrane, BushyCell, HairCell, HanningWindow,
                                          RmsNormalizer)
    wave = MonoAudioWave(np.array(x48, dtype=np.float64), FS).transform(RmsNormalizer(0.3))
    wave = wave.transform(HanningWindow() if ramp_s is None else HanningWindow(ramp_s, ramp_s))
    membrane = wave.transform(BasilarMembrane(channels=channels))
    hair = membrane.transform(HairCell())
    np.random.seed(seed)
    spikes = hair.transform(BushyCell(n_convergence=fibres))
    result = (spikes.spike_times, spikes.spike_labels.astype(np.int64))
    return (result, membrane, hair) if stages else result


def _assert_same_spikes(ours, theirs):
    t, c = ours
    tl, cl = theirs
    assert t.shape == tl.shape, f"{t.size} spikes vs lauscher's {tl.size}"
    np.testing.assert_array_equal(t, tl)
    np.testing.assert_array_equal(c, cl)


# ----------------------------------------------------------------------------- exact mode vs lauscher

def test_exact_equals_lauscher_tone_and_noise():
    x = _tone_noise(0.025)
    ours = co.cochlea_spikes(x, FS, mode="exact", seed=3, channels=96)
    theirs = _lauscher(x, channels=96, seed=3)
    assert ours[0].size > 20
    _assert_same_spikes(ours, theirs)


def test_exact_equals_lauscher_ramp_window_and_fibres():
    x = _tone_noise(0.03, seed=2, f0=450.0)
    ours = co.cochlea_spikes(x, FS, mode="exact", seed=11, channels=48, fibres=24, window="ramp",
                             ramp_ms=5.0)
    theirs = _lauscher(x, channels=48, fibres=24, seed=11, ramp_s=0.005)
    assert ours[0].size > 10
    _assert_same_spikes(ours, theirs)


def test_exact_stages_equal_lauscher_at_700_channels():
    """Membrane (700 channels), hair cells and bushy cells of a 20 ms clip, stage by stage."""
    from lauscher.audiowaves import MonoAudioWave
    from lauscher.firing_probability import FiringProbability
    from lauscher.transformations import BasilarMembrane, BushyCell, HairCell, HanningWindow, RmsNormalizer
    x = _tone_noise(0.02, seed=4)
    wave = MonoAudioWave(x.copy(), FS).transform(RmsNormalizer(0.3)).transform(HanningWindow())
    membrane = wave.transform(BasilarMembrane()).channels
    ours_v = co.membrane_velocity(x, mode="exact")
    assert np.abs(ours_v - membrane).max() / np.abs(membrane).max() < 1e-12
    # Hair cells: lauscher's own per-channel loop, bitwise, on its membrane output.
    pick = np.r_[0, 137, np.arange(300, 700, 34), 699]
    theirs_p = np.array([HairCell()._meddis(membrane[ch], 24000) for ch in pick])
    np.testing.assert_array_equal(co.hair_cell(membrane[pick], mode="exact"), theirs_p)
    # Bushy cells: lauscher's BushyCell on those channels' probabilities, same seed, bitwise.
    np.random.seed(21)
    theirs = BushyCell()(FiringProbability(theirs_p, 24000))
    ours = co._bushy_exact(theirs_p, np.random.RandomState(21).random_sample, 40)
    t, c = np.nonzero(ours.T)
    assert t.size > 0
    np.testing.assert_array_equal(t / 24000, theirs.spike_times)
    np.testing.assert_array_equal(c, theirs.spike_labels.astype(int))


def test_exact_random_state_forms_agree():
    """seed s == RandomState(s) == a Generator over the same MT19937 == the global stream."""
    x = _tone_noise(0.02, seed=5)
    kw = dict(mode="exact", channels=40)
    a = co.cochlea_spikes(x, FS, seed=7, **kw)
    b = co.cochlea_spikes(x, FS, rng=np.random.RandomState(7), **kw)
    c = co.cochlea_spikes(x, FS, rng=np.random.Generator(np.random.RandomState(7)._bit_generator), **kw)
    np.random.seed(7)
    d = co.cochlea_spikes(x, FS, rng=np.random.mtrand._rand, **kw)
    for other in (b, c, d):
        _assert_same_spikes(a, other)
    e = co.cochlea_spikes(x, FS, seed=8, **kw)
    assert not (e[0].size == a[0].size and np.array_equal(e[0], a[0]) and np.array_equal(e[1], a[1]))


@pytest.mark.slow
def test_exact_equals_lauscher_on_a_real_recording_slice():
    assert RECORDINGS.is_dir(), f"{RECORDINGS} is absent (the tests use ../shared/data/fsdd)"
    import soundfile
    audio, rate = soundfile.read(str(RECORDINGS / "3_theo_7.wav"))
    x48 = resample_poly(audio, FS // rate, 1)[int(0.08 * FS):int(0.13 * FS)]
    ours = co.cochlea_spikes(x48, FS, mode="exact", seed=5)
    theirs = _lauscher(x48, channels=700, seed=5)
    assert ours[0].size > 100
    _assert_same_spikes(ours, theirs)


# ----------------------------------------------------------------------------- fast mode vs exact mode

def test_fast_membrane_and_hair_cells_match_exact():
    x = _tone_noise(0.1)[:_smooth_length(0.1)]
    exact_v = co.membrane_velocity(x, mode="exact")
    fast_v = co.membrane_velocity(x, mode="fast")
    err = np.abs(fast_v - exact_v).max(axis=1) / np.abs(exact_v).max(axis=1)
    assert err.max() < 1e-5, f"channel {err.argmax()}: {err.max():.2e}"
    exact_p = co.hair_cell(exact_v, mode="exact")
    fast_p = co.hair_cell(exact_v, mode="fast")
    assert np.abs(fast_p - exact_p).max() / exact_p.max() < 1e-6


def test_fast_membrane_of_a_padded_length_stays_close():
    """Lengths with large prime factors run padded: the same levels; waveforms drift by < 1 sample.

    The most basal channels (CF > 18 kHz) differ a little more in level under
    broadband input: lauscher's real part of a one-sided spectrum mixes each
    frequency with its mirror about 12 kHz, with a beat that depends on the length.
    """
    x = _tone_noise(0.11, seed=6)[:4802]         # N // 2 + 1 = 2402 = 2 x 1201
    assert not co._smooth(x.size // 2 + 1)
    exact_v = co.membrane_velocity(x, mode="exact")
    fast_v = co.membrane_velocity(x, mode="fast")
    level = np.sqrt((fast_v ** 2).mean(axis=1) / (exact_v ** 2).mean(axis=1)) - 1
    cf = co._characteristic_hz(co._places(700))
    assert np.abs(level[cf < 10000]).max() < 0.005
    assert np.abs(level).max() < 0.08
    err = np.abs(fast_v - exact_v).max(axis=1) / np.abs(exact_v).max(axis=1)
    assert err[cf < 500].max() < 0.05


def _exact_fibre_counts(prob: np.ndarray, seed: int, fibres: int = 40) -> np.ndarray:
    """lauscher's fibres (draws, then ``_correct``) summed per channel: ``[M, channels]``."""
    rs = np.random.RandomState(seed)
    nc, m = prob.shape
    cand = np.array([rs.random_sample((m, fibres)) < prob[i][:, None] for i in range(nc)])
    last = np.full((nc, fibres), -24.0)
    for j in range(m):
        row = cand[:, j, :]
        row &= ~(j - last < 24)
        last[row] = j
    return np.ascontiguousarray(cand.sum(axis=2).T)


@pytest.fixture(scope="module")
def probabilities():
    """Exact hair-cell probabilities of 30 channels for a 0.1 s clip, and their membrane."""
    x = _tone_noise(0.1, seed=9)[:_smooth_length(0.1)]
    velocity = co.membrane_velocity(x, mode="exact", channels=30)
    return velocity, co.hair_cell(velocity, mode="exact")


class _Replay:
    """A fibre sampler that returns given spike counts (and keeps the hair cells' output)."""

    def __init__(self, counts):
        self.counts, self.t, self.cleft = counts, 0, []

    def run(self, cleft):
        self.cleft.append(cleft.copy())
        out = self.counts[self.t:self.t + cleft.shape[0]]
        self.t += cleft.shape[0]
        return out


def test_fast_bushy_cells_equal_exact_given_the_same_fibre_spikes(probabilities, monkeypatch):
    velocity, prob = probabilities
    counts = _exact_fibre_counts(prob, seed=1)
    exact = co._bushy_exact(prob, np.random.RandomState(1).random_sample, 40)
    for chunk in (2048, 333):
        monkeypatch.setattr(co, "_TIME_CHUNK", chunk)
        replay = _Replay(counts)
        t, c = co._Pipeline(prob.shape[0], 40, replay).run(co._Velocity.from_array(velocity.T))
        te, ce = np.nonzero(exact.T[:-1])
        keep = t < prob.shape[1] - 1
        np.testing.assert_array_equal(t[keep], te)
        np.testing.assert_array_equal(c[keep], ce)
        # The loop's hair cells are lauscher's (to single-precision membrane input).
        hair = np.concatenate(replay.cleft).T * co._hair_constants().hdt
        assert np.abs(hair - prob).max() / prob.max() < 1e-6
    assert exact.sum() > 20


def test_fast_hair_cells_take_the_replenishment_branch_when_needed(monkeypatch):
    """The loop drops lauscher's ``q < m`` branch and redoes the steps with it when a state
    reaches ``q >= m``; with ``m`` just under the resting ``q`` (the constants kept) it binds."""
    k = co._hair_constants()
    monkeypatch.setattr(co, "_hair_constants", lambda fs=co.MODEL_RATE: k)
    monkeypatch.setattr(co, "HC_M", 0.95 * k.q0)
    redone = []
    branching = co._HairState._run_branching
    monkeypatch.setattr(co._HairState, "_run_branching",
                        lambda self, *a, **kw: redone.append(1) or branching(self, *a, **kw))
    t = np.arange(6000) / 24000
    velocity = (np.sin(2 * np.pi * 500 * t)[:, None] * np.arange(1, 9)[None, :]).astype(np.float32)
    velocity[2000:3000] = -10.0                      # no release: q recovers
    exact = co.hair_cell(velocity.T.astype(np.float64), mode="exact")
    for chunk in (2048, 333):
        monkeypatch.setattr(co, "_TIME_CHUNK", chunk)
        replay = _Replay(np.zeros(velocity.shape, dtype=np.uint8))
        co._Pipeline(8, 40, replay).run(co._Velocity.from_array(velocity))
        hair = np.concatenate(replay.cleft).T * k.hdt
        assert np.abs(hair - exact).max() / exact.max() < 1e-6
    assert redone


def test_fast_fibres_are_refractory_and_match_lauscher_in_distribution(probabilities):
    _, prob = probabilities
    hdt = co._hair_constants().hdt
    cleft = np.ascontiguousarray(prob.T) / hdt

    def fast(seed, kind=co._Fibres):
        sampler = kind(prob.shape[0], 40, np.random.default_rng(seed), hdt)
        kept = [sampler.run(cleft[a:a + 1000]) for a in range(0, cleft.shape[0], 1000)]
        return np.concatenate(kept)

    # No fibre spikes twice within the refractory period (the kept masks are checked directly).
    sampler = co._Fibres(prob.shape[0], 40, np.random.default_rng(0), hdt)
    sampler.run(cleft)
    kept = sampler.kept
    assert kept.any()
    for lag in range(1, 24):
        assert not np.any(kept[lag:] & kept[:-lag])
    exact = np.array([_exact_fibre_counts(prob, s) for s in range(16)])
    te, se = exact.sum(axis=(1, 2)), exact.sum(axis=1)      # per run; per run and channel
    for kind, runs in ((co._Fibres, 64), (co._FibresSorted, 16)):
        ours = np.array([fast(s, kind) for s in range(runs)])
        # Totals and per-channel means agree within sampling noise.
        tf, sf = ours.sum(axis=(1, 2)), ours.sum(axis=1)
        z = (tf.mean() - te.mean()) / np.sqrt(te.var(ddof=1) / te.size + tf.var(ddof=1) / tf.size)
        assert abs(z) < 4, (kind, z)
        zc = (sf.mean(0) - se.mean(0)) / np.sqrt(se.var(0, ddof=1) / len(se) + sf.var(0, ddof=1) / len(sf))
        assert np.abs(zc).max() < 4.5, (kind, zc)
        # Refractoriness shows in the count variance per sample (below binomial's).
        ve, vf = exact.var(axis=0, ddof=1).mean(), ours.var(axis=0, ddof=1).mean()
        assert abs(vf / ve - 1) < 0.05, (kind, vf / ve)


@pytest.mark.slow
def test_fast_statistics_match_exact_on_a_real_recording():
    assert RECORDINGS.is_dir(), f"{RECORDINGS} is absent (the tests use ../shared/data/fsdd)"
    import soundfile
    audio, rate = soundfile.read(str(RECORDINGS / "3_theo_7.wav"))
    exact = [co.cochlea_spikes(audio, rate, mode="exact", seed=s) for s in range(3)]
    fast = [co.cochlea_spikes(audio, rate, mode="fast", seed=s) for s in range(12)]
    ce = np.mean([np.bincount(c, minlength=700) for _, c in exact], axis=0)
    cf = np.mean([np.bincount(c, minlength=700) for _, c in fast], axis=0)
    assert abs(cf.sum() / ce.sum() - 1) < 0.05
    groups = lambda v: v.reshape(35, 20).sum(axis=1)  # noqa: E731
    assert np.corrcoef(groups(ce), groups(cf))[0, 1] > 0.98

    def rates(runs):  # 35 channel groups x 10 ms bins, mean over runs
        return np.mean([np.histogram2d(c, t, bins=[35, 25], range=[[0, 700], [0, 0.25]])[0]
                         for t, c in runs], axis=0)

    re, rf = rates(exact), rates(fast)
    floor = np.abs(rates(fast[:3]) - rates(fast[3:])).sum()      # the same run counts, fast vs fast
    assert np.abs(re - rf).sum() < 1.5 * floor


# ----------------------------------------------------------------------------- options, output, validation

def test_ramp_window_keeps_onsets():
    x = np.ones(4000)
    ramp = co.preprocess(x, "ramp", 10.0)
    n = 480
    assert ramp[0] == 0 and ramp[-1] == 0
    np.testing.assert_allclose(ramp[n:-n], 0.3 * np.ones(4000 - 2 * n) / np.sqrt(np.mean(x ** 2)))
    np.testing.assert_allclose(ramp[:n], 0.3 * np.hanning(2 * n)[:n])
    hann = co.preprocess(x, "hann")
    np.testing.assert_allclose(hann[:2000], 0.3 * np.hanning(4000)[:2000])
    # A tone from its first sample: the ramp lets the onset through, the Hann window does not.
    tone = _tone_noise(0.2, seed=3)
    early = lambda w: (co.cochlea_spikes(tone, FS, window=w, channels=100, seed=0)[0] < 0.03).sum()  # noqa: E731
    assert early("ramp") > 3 * max(1, early("hann"))
    # Ramps longer than half the clip become the Hann window.
    np.testing.assert_array_equal(co.preprocess(x[:500], "ramp", 10.0), co.preprocess(x[:500], "hann"))


def test_any_rate_is_resampled_to_48k():
    rng = np.random.default_rng(2)
    x8 = np.sin(2 * np.pi * 440 * np.arange(400) / 8000) + 0.1 * rng.standard_normal(400)
    x48 = resample_poly(x8, 6, 1)
    for mode in ("exact", "fast"):
        _assert_same_spikes(co.cochlea_spikes(x8, 8000, mode=mode, channels=64, seed=4),
                            co.cochlea_spikes(x48, FS, mode=mode, channels=64, seed=4))


def test_output_is_sorted_typed_and_seeded():
    x = _tone_noise(0.12, seed=8)
    t, c = co.cochlea_spikes(x, FS, seed=5)
    assert t.dtype == np.float64 and c.dtype == np.int64 and t.shape == c.shape
    assert t.size > 100 and c.min() >= 0 and c.max() < 700
    order = np.lexsort((c, t))
    np.testing.assert_array_equal(order, np.arange(t.size))
    np.testing.assert_allclose(t * 24000, np.round(t * 24000), atol=1e-6)
    assert t.max() < x.size / FS
    _assert_same_spikes((t, c), co.cochlea_spikes(x, FS, seed=5))
    _assert_same_spikes((t, c), co.cochlea_spikes(x, FS, seed=99, rng=np.random.default_rng(5)))
    other = co.cochlea_spikes(x, FS, seed=6)
    assert not (other[0].size == t.size and np.array_equal(other[1], c))
    # More fibres than fit one machine word take the sorted sampler.
    t2, c2 = co.cochlea_spikes(x, FS, seed=5, channels=40, fibres=80)
    assert t2.size > 0 and c2.max() < 40


@pytest.mark.parametrize("kwargs, pattern", [
    (dict(audio=np.zeros(0)), "empty"),
    (dict(audio=np.array([0.1, np.nan, 0.2])), "non-finite.*index 1"),
    (dict(audio=np.array([0.1, np.inf])), "non-finite"),
    (dict(audio=np.zeros((100, 2))), r"mono.*\(100, 2\)"),
    (dict(audio=np.zeros(100)), "silent"),
    (dict(audio=np.ones(100, dtype=complex)), "real"),
    (dict(sample_rate=0), "Sample rate.*0"),
    (dict(sample_rate=-8000), "Sample rate.*-8000"),
    (dict(sample_rate=44100.5), "Sample rate.*44100.5"),
    (dict(mode="slow"), "Mode.*'slow'"),
    (dict(window="hamming"), "Window.*'hamming'"),
    (dict(ramp_ms=-1.0), "ramp_ms.*-1.0"),
    (dict(channels=0), "channels.*0"),
    (dict(fibres=2.5), "fibres.*2.5"),
    (dict(seed=-3), "Seed.*-3"),
    (dict(rng=np.random.RandomState(0)), "Generator.*RandomState"),
])
def test_invalid_input_is_rejected_with_the_value(kwargs, pattern):
    args = dict(audio=np.sin(np.arange(800.0)), sample_rate=8000)
    args.update(kwargs)
    audio, rate = args.pop("audio"), args.pop("sample_rate")
    with pytest.raises(ValueError, match=pattern):
        co.cochlea_spikes(audio, rate, channels=args.pop("channels", 8), **args)


def test_memory_stays_bounded_for_a_3s_clip():
    """Fast mode on a 3 s clip in a fresh process: peak RSS under 500 MB."""
    code = textwrap.dedent("""
        import json, resource, numpy as np
        from delrec.golden.tasks.cochlea import cochlea_spikes
        rng = np.random.default_rng(0)
        t = np.arange(3 * 16000) / 16000
        x = np.sin(2 * np.pi * 300 * t) * (1 + np.sin(2 * np.pi * 3 * t)) + 0.1 * rng.standard_normal(t.size)
        spikes = cochlea_spikes(x, 16000)
        try:  # this process's own high-water mark (ru_maxrss can carry the parent's across exec)
            with open("/proc/self/status") as f:
                rss = next(int(l.split()[1]) for l in f if l.startswith("VmHWM:")) / 1024
        except OSError:
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps({"rss_mb": rss, "spikes": int(spikes[0].size)}))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["spikes"] > 1000
    assert result["rss_mb"] < 500, result
