"""Spoken digits: folder scanning, wav reading, mel spike codes, caching, splits."""

from pathlib import Path

import numpy as np
import pytest
from scipy.io import wavfile

from delrec.golden.tasks.base import load_task
from delrec.golden.tasks.mel import log_mel, mel_filterbank, mel_spikes
from delrec.golden.tasks.spoken import read_wav, scan_recordings

FSDD = Path(__file__).resolve().parents[2] / "shared" / "data" / "fsdd" / "recordings"


def tone(freq, seconds=0.3, rate=8000, amplitude=0.5):
    t = np.arange(int(seconds * rate)) / rate
    return amplitude * np.sin(2 * np.pi * freq * t) * np.hanning(t.size)


@pytest.fixture
def folder(tmp_path):
    """3 speakers x 10 digits x 6 takes of tones whose pitch names the digit."""
    rng = np.random.default_rng(0)
    root = tmp_path / "wavs"
    root.mkdir()
    for speaker in ("ann", "bob", "cyd"):
        for digit in range(10):
            for index in range(6):
                audio = tone(200 + 150 * digit, seconds=0.2 + 0.05 * index)
                audio += 0.01 * rng.standard_normal(audio.size)
                wavfile.write(root / f"{digit}_{speaker}_{index}.wav", 8000,
                              (audio * 32767).astype(np.int16))
    return root


def test_scan_and_read(folder):
    recs = scan_recordings(folder)
    assert len(recs) == 180
    assert {r.speaker for r in recs} == {"ann", "bob", "cyd"}
    audio, rate = read_wav(recs[0].path)
    assert rate == 8000 and audio.dtype == np.float64 and np.abs(audio).max() <= 1.0


def test_bad_folders_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        scan_recordings(tmp_path / "none")
    (tmp_path / "x").mkdir()
    with pytest.raises(ValueError, match="No wav files"):
        scan_recordings(tmp_path / "x")
    (tmp_path / "x" / "hello.wav").write_bytes(b"RIFF")
    with pytest.raises(ValueError, match="not named digit_speaker_index.wav, e.g. 'hello.wav'"):
        scan_recordings(tmp_path / "x")
    (tmp_path / "x" / "hello.wav").rename(tmp_path / "x" / "3_zed_0.wav")
    with pytest.raises(ValueError, match="Cannot read .*3_zed_0.wav as a wav file"):
        read_wav(tmp_path / "x" / "3_zed_0.wav")


def test_mel_filterbank_covers_the_band():
    fb = mel_filterbank(64, 512, 8000)
    assert fb.shape == (64, 257)
    assert (fb.max(axis=1) > 0.5).all()  # no empty filter
    with pytest.raises(ValueError, match="fmin < fmax"):
        mel_filterbank(8, 512, 8000, fmin=5000)


def test_mel_energy_peaks_at_the_tone():
    db = log_mel(tone(1000.0), 8000, bands=64)
    assert db.shape[1] == 64 and abs(db.shape[0] - 300) <= 2  # 1 ms hop
    peak = db[150].argmax()
    fb = mel_filterbank(64, 256, 8000)
    centre = np.argmax(fb[peak]) * 4000 / 128
    assert abs(centre - 1000) < 120


def test_integrate_and_fire_rate_follows_energy():
    times, chans, n = mel_spikes(tone(1000.0), 8000, code="if")
    assert n == 64 and times.size == chans.size > 0
    per_band = np.bincount(chans, minlength=64)
    assert per_band.argmax() == log_mel(tone(1000.0), 8000)[150].argmax()
    # at most one spike per band and millisecond
    pairs = set(zip(np.round(times * 1000).astype(int), chans))
    assert len(pairs) == times.size


def test_delta_code_has_on_and_off_channels():
    times, chans, n = mel_spikes(tone(700.0), 8000, code="delta", delta_db=3.0)
    assert n == 128
    assert (chans < 64).any() and (chans >= 64).any()  # rising then falling envelope


def test_spoken_task_standard_split_and_cache(folder, tmp_path):
    cache = tmp_path / "cache"
    task = load_task("spoken-digits", data=str(folder), cache_dir=str(cache), workers=2,
                     progress=False)
    assert task.inputs == 64 and task.classes == 10
    assert len(task.test) == 3 * 10 * 5  # indices 0-4
    assert len(task.train) + len(task.val) == 3 * 10 * 1
    files = sorted(cache.iterdir())
    assert len(files) == 180
    stamp = [f.stat().st_mtime_ns for f in files]
    again = load_task("spoken-digits", data=str(folder), cache_dir=str(cache), workers=1, progress=False)
    assert [f.stat().st_mtime_ns for f in sorted(cache.iterdir())] == stamp  # served from cache
    assert np.array_equal(again.test.spikes.numpy(), task.test.spikes.numpy())
    delta = load_task("spoken-digits", data=str(folder), cache_dir=str(cache), mel_code="delta",
                      progress=False)
    assert delta.inputs == 128 and len(list(cache.iterdir())) == 360  # new parameters, new keys


def test_held_out_speakers(folder, tmp_path):
    task = load_task("spoken-digits", data=str(folder), cache_dir=str(tmp_path / "c"),
                     test_speakers=["bob"], progress=False)
    assert len(task.test) == 60 and len(task.train) + len(task.val) == 120
    with pytest.raises(ValueError, match=r"Test speaker\(s\) \['zoe'\] not among"):
        load_task("spoken-digits", data=str(folder), test_speakers=["zoe"], progress=False)
    with pytest.raises(ValueError, match="needs data=FOLDER"):
        load_task("spoken-digits")
    with pytest.raises(ValueError, match=r"Unknown option\(s\) \['bands'\] for the 'cochlea'"):
        load_task("spoken-digits", data=str(folder), encoder="cochlea", bands=3)


def test_bench_holds_out_the_named_speakers(folder, monkeypatch, capsys):
    from delrec.cli import main
    from delrec.golden import experiments

    seen = {}

    def capture(task, models, seeds, out_dir, **kwargs):
        seen.update(kwargs)
        raise KeyboardInterrupt  # stop before training: only the splits are under test

    monkeypatch.setattr(experiments, "compare_models", capture)
    with pytest.raises(KeyboardInterrupt):
        main(["bench", "accuracy", "--task", "spoken-digits", "--data", str(folder),
              "--hold-out", "cyd", "ann", "--standard-split"])
    assert list(seen["splits"]) == ["standard", "held out: cyd", "held out: ann"]
    assert seen["splits"]["held out: cyd"] == {"test_speakers": ["cyd"]}
    # the same labels (so the same run folders) as --hold-out-each-speaker
    with pytest.raises(KeyboardInterrupt):
        main(["bench", "accuracy", "--task", "spoken-digits", "--data", str(folder),
              "--hold-out-each-speaker"])
    assert list(seen["splits"]) == ["held out: ann", "held out: bob", "held out: cyd"]
    monkeypatch.undo()
    assert main(["bench", "accuracy", "--task", "spoken-digits", "--data", str(folder),
                 "--hold-out", "zoe"]) == 2
    assert "Test speaker(s) ['zoe'] not among the speakers" in capsys.readouterr().err
    assert main(["bench", "accuracy", "--task", "spoken-digits", "--data", str(folder),
                 "--hold-out", "ann", "--hold-out-each-speaker"]) == 2
    assert "Give --hold-out-each-speaker or --hold-out SPEAKER ..., not both" in capsys.readouterr().err


def test_augmentations_on_the_training_split_only(folder, tmp_path):
    options = dict(data=str(folder), cache_dir=str(tmp_path / "c"), progress=False)
    plain = load_task("spoken-digits", **options)
    task = load_task("spoken-digits", shift_max=5, channel_shift=2, blend_p=0.5, **options)
    assert type(task.train).__name__ == "AugmentedSpikes"
    assert np.array_equal(task.test.spikes.numpy(), plain.test.spikes.numpy())
    task.train.set_epoch(0)
    drawn = np.stack([task.train[i][0].numpy() for i in range(len(task.train))])
    assert drawn.shape == plain.train.spikes.shape
    assert not np.array_equal(drawn, plain.train.spikes.numpy())
    task.train.set_epoch(0)
    assert np.array_equal(task.train[3][0].numpy(), drawn[3])  # same epoch, same draw
    with pytest.raises(ValueError, match="blend_p must be a probability in \\[0, 1\\], not 2"):
        load_task("spoken-digits", blend_p=2, **options)
    with pytest.raises(ValueError, match="channel_shift 64 must be below the 64 channels"):
        load_task("spoken-digits", channel_shift=64, **options)


def test_real_recording_mel_encoding():
    path = sorted(FSDD.glob("7_*_0.wav"))[0]
    from delrec.golden.tasks.spoken import encoder_parameters, encode_recording

    counts = encode_recording(path, encoder_parameters("mel", dict(bin_ms=10.0, pool=1)))
    audio, rate = read_wav(path)
    assert counts.shape == (int(np.ceil(len(audio) / rate * 100)), 64)
    assert counts.sum() > 100 and counts.max() <= 10


def test_stretch_moves_spikes_and_keeps_them_when_compressing():
    from delrec.golden.tasks.events import stretch_time

    x = np.zeros((10, 2), dtype=np.int64)
    x[2, 0], x[9, 1] = 1, 2
    slow = stretch_time(x, 1.5)
    assert slow[3, 0] == 1 and slow.sum() == 1  # step 9 -> 14 leaves the window
    fast = stretch_time(x, 0.8)
    assert fast[2, 0] == 1 and fast[7, 1] == 2 and fast.sum() == x.sum()
    with pytest.raises(ValueError, match="stretch must be in \\[0, 1\\), not 1.5"):
        from delrec.golden.tasks.events import AugmentedSpikes
        from delrec.golden.tasks.base import SpikeTensorDataset
        import torch
        AugmentedSpikes(SpikeTensorDataset(np.zeros((2, 10, 3), np.uint8), np.array([0, 1])),
                        stretch=1.5)
