"""Loaders of the published datasets (SHD, SSC, MNIST) on tiny files in their exact formats."""

import gzip

import h5py
import numpy as np
import pytest
import torch

from delrec.golden.tasks.base import SpikeTensorDataset, load_task, make_loader
from delrec.golden.tasks.digits import encode_thermometer
from delrec.golden.tasks.events import (AugmentedSpikes, bin_events, center_of_mass,
                                        shift_channels, shift_time)


# ---------------------------------------------------------------- bin_events

def test_bin_events_counts_per_bin_and_pooled_channel():
    times = [0.0, 0.0049, 0.0101, 0.0101, 0.0101, 0.025, 0.0305, 0.0001]
    units = [0, 4, 5, 9, 9, 699, 3, 1]
    out = bin_events(times, units, 700, bin_ms=10.0, pool=5)
    assert out.dtype == np.uint8 and out.shape == (4, 140)
    expected = np.zeros((4, 140), dtype=np.uint8)
    expected[0, 0] = 3          # units 0, 4, 1 in bin 0
    expected[1, 1] = 3          # units 5, 9, 9 at 10.1 ms
    expected[2, 139] = 1        # unit 699 at 25 ms
    expected[3, 0] = 1          # unit 3 at 30.5 ms
    np.testing.assert_array_equal(out, expected)
    # no pooling, other bin width
    out = bin_events(times, units, 700, bin_ms=5.0, pool=1)
    assert out.shape == (7, 700)
    assert out.sum() == len(times) and out[2, 9] == 2 and out[0, 4] == 1 and out[5, 699] == 1


def test_bin_events_length_edges_and_truncation():
    # a spike exactly on a bin edge opens a new bin: no event is lost
    out = bin_events([0.02], [0], 10, bin_ms=10.0, pool=1)
    assert out.shape == (3, 10) and out[2, 0] == 1
    # no events: one empty step, or `steps` empty steps
    assert bin_events([], [], 700).shape == (1, 140)
    assert bin_events(np.zeros(0), np.zeros(0, dtype=int), 700, steps=7).sum() == 0
    # explicit steps: events at or after steps * bin are the caller's cut
    out = bin_events([0.001, 0.019, 0.02, 0.5], [0, 1, 2, 3], 10, pool=2, steps=2)
    assert out.shape == (2, 5)
    np.testing.assert_array_equal(out[:, 0], [1, 1])
    assert out.sum() == 2
    # steps longer than the events: zero padded
    assert bin_events([0.001], [0], 10, pool=2, steps=50).shape == (50, 5)


def test_bin_events_count_limit_is_an_error_not_a_clip():
    assert bin_events(np.full(255, 0.001), np.zeros(255, int), 10, pool=5)[0, 0] == 255
    with pytest.raises(OverflowError, match="time bin 1, channel 2 holds 256 spikes"):
        bin_events(np.full(256, 0.015), np.full(256, 11), 20, pool=5)


@pytest.mark.parametrize("kwargs,match", [
    (dict(times_s=[-0.5], units=[0]), r"non-negative seconds, not -0\.5"),
    (dict(times_s=[np.nan], units=[0]), "must be finite, not nan"),
    (dict(times_s=[0.1], units=[700]), r"Unit 700 is out of range 0\.\.699"),
    (dict(times_s=[0.1], units=[-1]), r"Unit -1 is out of range 0\.\.699"),
    (dict(times_s=[0.1], units=[1.5]), "Units must be integers"),
    (dict(times_s=[0.1, 0.2], units=[1]), "times_s has 2 events but units has 1"),
    (dict(times_s=[[0.1]], units=[[1]]), "must be 1-D"),
    (dict(times_s=[0.1], units=[1], num_units=701), "num_units 701 is not divisible by pool 5"),
    (dict(times_s=[0.1], units=[1], pool=0), "pool must be a positive integer, not 0"),
    (dict(times_s=[0.1], units=[1], bin_ms=0.0), "bin_ms must be a positive number"),
    (dict(times_s=[0.1], units=[1], steps=0), "steps must be a positive integer or None, not 0"),
])
def test_bin_events_validation(kwargs, match):
    kwargs = {"num_units": 700, **kwargs}
    with pytest.raises(ValueError, match=match):
        bin_events(**kwargs)


# ---------------------------------------------------------------- SHD / SSC files

def write_h5(path, times, units, labels, skip=(), times_dtype=np.float32):
    """A file in the published layout: vlen spikes/times, spikes/units, labels."""
    with h5py.File(path, "w") as f:
        spikes = f.create_group("spikes")
        if "spikes/times" not in skip:
            ds = spikes.create_dataset("times", (len(times),), dtype=h5py.vlen_dtype(times_dtype))
            for i, t in enumerate(times):
                ds[i] = np.asarray(t, dtype=times_dtype)
        if "spikes/units" not in skip:
            ds = spikes.create_dataset("units", (len(units),), dtype=h5py.vlen_dtype(np.uint16))
            for i, u in enumerate(units):
                ds[i] = np.asarray(u, dtype=np.uint16)
        if "labels" not in skip:
            f.create_dataset("labels", data=np.asarray(labels, dtype=np.uint16))


def make_samples(rng, labels, max_time=1.3):
    """Random events whose unit range depends on the class (class k fires units 20k..20k+19)."""
    times, units = [], []
    for label in labels:
        n = int(rng.integers(5, 40))
        times.append(np.sort(rng.uniform(0, max_time, n)).astype(np.float32))
        units.append(rng.integers(0, 20, n) + 20 * label)
    return times, units


def write_shd(folder, rng, per_class=3, classes=20, prefix="shd", splits=("train", "test")):
    folder.mkdir(exist_ok=True)
    contents = {}
    for split in splits:
        labels = np.repeat(np.arange(classes), per_class)
        rng.shuffle(labels)
        times, units = make_samples(rng, labels)
        write_h5(folder / f"{prefix}_{split}.h5", times, units, labels)
        contents[split] = (times, units, labels)
    return contents


def binned(times, units, **kw):
    kw = {"bin_ms": 10.0, "pool": 5, "steps": 140, **kw}
    return np.stack([bin_events(np.asarray(t, np.float64), u, 700, **kw) for t, u in zip(times, units)])


@pytest.fixture(scope="module")
def shd_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("shd")
    return folder, write_shd(folder, np.random.default_rng(0))


def test_shd_shapes_counts_and_split(shd_dir):
    folder, contents = shd_dir
    task = load_task("shd", data=folder)
    assert (task.name, task.inputs, task.classes, task.steps) == ("shd", 140, 20, 140)
    assert "10 ms bins, 140 steps (1.4 s)" in task.description
    assert isinstance(task.train, SpikeTensorDataset)  # no augmentation asked for
    times, units, labels = contents["train"]
    n_val = round(0.2 * len(labels))
    assert (len(task.train), len(task.val), len(task.test)) == (len(labels) - n_val, n_val, 60)
    expected = binned(times, units)
    order = np.random.default_rng(0).permutation(len(labels))
    np.testing.assert_array_equal(task.val.spikes.numpy(), expected[order[:n_val]])
    np.testing.assert_array_equal(task.train.spikes.numpy(), expected[order[n_val:]])
    np.testing.assert_array_equal(task.train.labels.numpy(), labels[order[n_val:]])
    t_times, t_units, t_labels = contents["test"]
    np.testing.assert_array_equal(task.test.spikes.numpy(), binned(t_times, t_units))
    np.testing.assert_array_equal(task.test.labels.numpy(), t_labels)
    x, y = next(iter(make_loader(task.train, 8, shuffle=True)))
    assert x.shape == (140, 8, 140) and x.dtype == torch.float32 and y.shape == (8,)


def test_shd_split_is_seeded_and_options_apply(shd_dir):
    folder, contents = shd_dir
    a, b = load_task("shd", data=folder, seed=3), load_task("shd", data=folder, seed=3)
    assert torch.equal(a.val.spikes, b.val.spikes) and torch.equal(a.train.labels, b.train.labels)
    c = load_task("shd", data=folder, seed=4, val_fraction=0.5)
    assert len(c.val) == 30 and not torch.equal(a.val.spikes[:30], c.val.spikes)
    d = load_task("shd", data=str(folder), bin_ms=5.0, pool=7, steps=300)
    assert (d.inputs, d.steps) == (100, 300) and d.test.spikes.shape == (60, 300, 100)
    times, units, _ = contents["test"]
    np.testing.assert_array_equal(d.test.spikes.numpy(),
                                  binned(times, units, bin_ms=5.0, pool=7, steps=300))
    assert load_task("shd", data=folder, bin_ms=4.0).steps == 350  # ceil(1400 / 4)


def test_events_after_the_window_are_counted_in_a_warning(tmp_path):
    write_h5(tmp_path / "shd_train.h5", [[0.1, 1.45], [0.2]], [[1, 2], [3]], [0, 1])
    write_h5(tmp_path / "shd_test.h5", [[0.1, 1.5, 2.0]], [[1, 2, 3]], [0])
    with pytest.warns(UserWarning, match=r"1\.4 s window.*1 of 3 events in shd_train\.h5; "
                                         r"2 of 3 events in shd_test\.h5"):
        task = load_task("shd", data=tmp_path, val_fraction=0.5)
    assert task.test.spikes.sum() == 1
    # a window that holds them all: no warning, nothing lost
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        task = load_task("shd", data=tmp_path, val_fraction=0.5, steps=201)
    assert task.test.spikes.sum() == 3


def test_ssc_uses_its_validation_file(tmp_path):
    contents = write_shd(tmp_path, np.random.default_rng(1), per_class=1, classes=35, prefix="ssc",
                         splits=("train", "valid", "test"))
    task = load_task("ssc", data=tmp_path)
    assert (task.name, task.inputs, task.classes, task.steps) == ("ssc", 140, 35, 140)
    assert (len(task.train), len(task.val), len(task.test)) == (35, 35, 35)
    times, units, labels = contents["valid"]
    np.testing.assert_array_equal(task.val.spikes.numpy(), binned(times, units))
    np.testing.assert_array_equal(task.val.labels.numpy(), labels)
    with pytest.raises(ValueError, match=r"Task 'ssc' has no option\(s\) \['val_fraction'\]"):
        load_task("ssc", data=tmp_path, val_fraction=0.2)


# ---------------------------------------------------------------- augmentations

def one_spike_per_channel(labels, steps=40, channels=12, at=20):
    spikes = np.zeros((len(labels), steps, channels), dtype=np.uint8)
    spikes[:, at, :] = 1
    return SpikeTensorDataset(spikes, labels)


def test_time_and_channel_shift_helpers():
    x = np.arange(12).reshape(4, 3)
    np.testing.assert_array_equal(shift_time(x, np.array([1, 0, -2])),
                                  [[0, 1, 8], [0, 4, 11], [3, 7, 0], [6, 10, 0]])
    np.testing.assert_array_equal(shift_channels(x, 1), [[0, 0, 1], [0, 3, 4], [0, 6, 7], [0, 9, 10]])
    np.testing.assert_array_equal(shift_channels(x, -2), [[2, 0, 0], [5, 0, 0], [8, 0, 0], [11, 0, 0]])
    assert center_of_mass(np.array([[0], [2], [0], [2]])) == 2.0
    assert center_of_mass(np.zeros((5, 2))) == 2.0


def test_per_channel_time_shift_moves_each_channel_within_range():
    aug = AugmentedSpikes(one_spike_per_channel([0, 1, 0]), seed=1, shift_max=5)
    x, y = aug[0]
    assert y == 0 and x.shape == (40, 12)
    assert torch.all(x.sum(0) == 1)  # every spike kept (20 +- 5 stays in the window)
    when = x.argmax(0)
    assert torch.all((when - 20).abs() <= 5)
    assert len(set(when.tolist())) > 1  # channels move independently
    # shift_p=0: never shifted
    plain = AugmentedSpikes(one_spike_per_channel([0, 1]), shift_max=5, shift_p=0.0)
    assert torch.equal(plain[0][0], plain.base[0][0])


def test_channel_shift_moves_the_channel_axis():
    spikes = np.zeros((4, 10, 12), dtype=np.uint8)
    spikes[:, 3, 5] = 1
    aug = AugmentedSpikes(SpikeTensorDataset(spikes, [0, 0, 1, 1]), seed=0, channel_shift=3)
    seen = set()
    for _ in range(30):
        x, _ = aug[2]
        assert x.sum() == 1 and x[3].sum() == 1  # same time, one channel
        seen.add(int(x[3].argmax()) - 5)
    assert seen <= set(range(-3, 4)) and len(seen) > 3


def test_augmentation_is_deterministic_with_the_seed():
    data = one_spike_per_channel([0, 1, 0, 1])
    a = AugmentedSpikes(data, seed=7, shift_max=6, channel_shift=2)
    b = AugmentedSpikes(data, seed=7, shift_max=6, channel_shift=2)
    first = [a[i][0] for i in range(4)]
    assert all(torch.equal(x, b[i][0]) for i, x in enumerate(first))
    again = a[0][0]  # a second read of a sample is a new draw
    assert not torch.equal(again, first[0])
    c = AugmentedSpikes(data, seed=8, shift_max=6, channel_shift=2)
    assert not all(torch.equal(x, c[i][0]) for i, x in enumerate(first))
    # set_epoch keys the draws to the epoch alone, whatever was read before
    a.set_epoch(3)
    fresh = AugmentedSpikes(data, seed=7, shift_max=6, channel_shift=2)
    fresh.set_epoch(3)
    assert torch.equal(a[1][0], fresh[1][0])


def test_blend_mixes_only_same_class_samples_and_keeps_the_label():
    # class k fires channel k only; sample i of a class at time 5 + 3 i with i + 1 spikes
    labels = [0, 0, 0, 1, 1, 2]
    spikes = np.zeros((6, 30, 3), dtype=np.uint8)
    for i, label in enumerate(labels):
        spikes[i, 5 + 3 * i, label] = i + 1
    data = SpikeTensorDataset(spikes, labels)
    aug = AugmentedSpikes(data, seed=0, blend_p=1.0, thin_p=1.0)  # thin_p=1 keeps every spike
    for _ in range(10):
        for i, label in enumerate(labels[:5]):
            x, y = aug[i]
            assert y == label
            assert x[:, [c for c in range(3) if c != label]].sum() == 0  # only its class's channel
            partner = int(x.sum()) - (i + 1)  # partner's spike count identifies it
            assert partner - 1 != i and labels[partner - 1] == label
            # the partner is aligned on the sample's centre of mass: all at one step
            assert int(x[:, label].argmax()) == 5 + 3 * i and x[5 + 3 * i, label] == x.sum()
    # a class with one sample has no partner: left as is
    assert torch.equal(aug[5][0], data[5][0])
    # thinning keeps each spike with probability thin_p
    thin = AugmentedSpikes(SpikeTensorDataset(np.full((2, 50, 4), 10, np.uint8), [0, 0]),
                           seed=0, blend_p=1.0, thin_p=0.25)
    total = np.mean([float(thin[0][0].sum()) for _ in range(20)])
    assert abs(total - 0.25 * 2 * 2000) < 60


def test_augmented_train_split_only(shd_dir):
    folder, _ = shd_dir
    task = load_task("shd", data=folder, shift_max=3, blend_p=0.5, channel_shift=2, seed=2)
    assert isinstance(task.train, AugmentedSpikes) and isinstance(task.val, SpikeTensorDataset)
    assert isinstance(task.test, SpikeTensorDataset)
    assert "train augmented (shift_max=3, channel_shift=2, blend_p=0.5)" in task.description
    plain = load_task("shd", data=folder, seed=2)
    assert torch.equal(task.train.labels, plain.train.labels)
    x, y = next(iter(make_loader(task.train, 48)))
    assert x.shape == (140, 48, 140) and torch.equal(y, plain.train.labels)
    again = load_task("shd", data=folder, shift_max=3, blend_p=0.5, channel_shift=2, seed=2)
    assert torch.equal(next(iter(make_loader(again.train, 48)))[0], x)


@pytest.mark.parametrize("options,match", [
    (dict(shift_max=-1), "shift_max must be a non-negative integer, not -1"),
    (dict(channel_shift=140), "channel_shift 140 must be below the 140 channels"),
    (dict(blend_p=1.5), r"blend_p must be a probability in \[0, 1\], not 1\.5"),
    (dict(thin_p=0.0), r"thin_p must be in \(0, 1\], not 0\.0"),
    (dict(val_fraction=1.0), r"val_fraction must be in \(0, 1\), not 1\.0"),
    (dict(pool=3), "num_units 700 is not divisible by pool 3"),
    (dict(seed=-1), "seed must be a non-negative integer, not -1"),
])
def test_bad_shd_options(shd_dir, options, match):
    with pytest.raises(ValueError, match=match):
        load_task("shd", data=shd_dir[0], **options)


# ---------------------------------------------------------------- malformed and missing files

GOOD = dict(times=[[0.1, 0.2], [0.3]], units=[[1, 2], [3]], labels=[0, 1])


@pytest.mark.parametrize("change,match", [
    (dict(skip=("labels",)), r"lacks the dataset\(s\) labels"),
    (dict(skip=("spikes/units",)), r"lacks the dataset\(s\) spikes/units"),
    (dict(labels=[0, 1, 2]),
     "datasets differ in length: spikes/times has 2, spikes/units has 2, labels has 3"),
    (dict(units=[[1, 2]]), "spikes/units has 1"),
    (dict(units=[[1], [3]]), "sample 0 has 2 spike times but 1 units"),
    (dict(units=[[1, 2], [700]]), r"sample 1 has unit 700, outside 0\.\.699"),
    (dict(labels=[0, 20]), r"sample 1 has label 20, outside 0\.\.19 \(20 classes\)"),
    (dict(times=[[0.1, -0.2], [0.3]]), "sample 0 has spike time -0.2"),
])
def test_malformed_h5_files_are_named(tmp_path, change, match):
    spec = {**GOOD, **change}
    write_h5(tmp_path / "shd_train.h5", spec["times"], spec["units"], spec["labels"],
             skip=spec.get("skip", ()))
    write_h5(tmp_path / "shd_test.h5", **GOOD)
    with pytest.raises(ValueError, match="shd_train.h5") as err:
        load_task("shd", data=tmp_path, val_fraction=0.5)
    assert err.match(match)


def test_not_hdf5_and_not_variable_length(tmp_path):
    write_h5(tmp_path / "shd_train.h5", **GOOD)
    (tmp_path / "shd_test.h5").write_bytes(b"not an hdf5 file")
    with pytest.raises(ValueError, match=r"shd_test\.h5 is not a readable HDF5 file"):
        load_task("shd", data=tmp_path, val_fraction=0.5)
    with h5py.File(tmp_path / "shd_test.h5", "w") as f:
        f["spikes/times"] = np.zeros(2)
        f["spikes/units"] = np.zeros(2, dtype=int)
        f["labels"] = np.zeros(2, dtype=int)
    with pytest.raises(ValueError, match=r"shd_test\.h5: spikes/times must be variable-length"):
        load_task("shd", data=tmp_path, val_fraction=0.5)


def test_bins_over_255_name_the_file(tmp_path):
    write_h5(tmp_path / "shd_train.h5", [np.full(300, 0.5), [0.1]], [np.full(300, 7), [1]], [0, 1])
    write_h5(tmp_path / "shd_test.h5", **GOOD)
    with pytest.raises(OverflowError, match=r"shd_train\.h5: sample 0, time bin 50, channel 1 "
                                            r"holds 300 spikes"):
        load_task("shd", data=tmp_path, val_fraction=0.5)


def test_missing_data_names_the_folder_file_and_source(tmp_path):
    with pytest.raises(ValueError, match=r"'shd' needs the option data=.*shd_train\.h5, shd_test\.h5"
                                         r".*https://zenkelab\.org/datasets/"):
        load_task("shd")
    with pytest.raises(FileNotFoundError, match=rf"{tmp_path / 'nope'} for task 'ssc' does not exist"
                                                r".*zenkelab\.org/datasets"):
        load_task("ssc", data=tmp_path / "nope")
    write_h5(tmp_path / "shd_train.h5", **GOOD)
    with pytest.raises(FileNotFoundError, match=rf"{tmp_path} for task 'shd' lacks shd_test\.h5; "
                                                r".*Cramer et al\. \(2020\) at https://zenkelab"):
        load_task("shd", data=tmp_path)
    (tmp_path / "shd_test.h5.gz").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match=r"shd_test\.h5\.gz found: gunzip it"):
        load_task("shd", data=tmp_path)
    with pytest.raises(FileNotFoundError, match=r"lacks ssc_train\.h5, ssc_valid\.h5, ssc_test\.h5"):
        load_task("ssc", data=tmp_path)


# ---------------------------------------------------------------- MNIST

def idx_bytes(array, magic=None):
    array = np.asarray(array, dtype=np.uint8)
    magic = (0x0800 | array.ndim) if magic is None else magic
    header = magic.to_bytes(4, "big") + b"".join(n.to_bytes(4, "big") for n in array.shape)
    return header + array.tobytes()


def write_mnist(folder, rng, n_train=12, n_test=5, gz=("train-images-idx3-ubyte",
                                                       "t10k-labels-idx1-ubyte")):
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {"train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28)),
              "train-labels-idx1-ubyte": rng.integers(0, 10, n_train),
              "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28)),
              "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test)}
    for name, array in arrays.items():
        data = idx_bytes(array)
        if name in gz:
            (folder / (name + ".gz")).write_bytes(gzip.compress(data))
        else:
            (folder / name).write_bytes(data)
    return arrays


def test_ps_mnist_reads_idx_plain_and_gzip(tmp_path):
    arrays = write_mnist(tmp_path, np.random.default_rng(0))
    task = load_task("ps-mnist", data=tmp_path, seed=1, permutation_seed=2, levels=4)
    assert (task.name, task.inputs, task.classes, task.steps) == ("ps-mnist", 4, 10, 784)
    assert (len(task.train), len(task.val), len(task.test)) == (10, 2, 5)
    order = np.random.default_rng(2).permutation(784)
    split = np.random.default_rng(1).permutation(12)
    images = arrays["train-images-idx3-ubyte"].reshape(12, 784)[:, order]
    expected = encode_thermometer(images, 4, max_value=255.0)
    np.testing.assert_array_equal(task.val.spikes.numpy(), expected[split[:2]])
    np.testing.assert_array_equal(task.train.labels.numpy(), arrays["train-labels-idx1-ubyte"][split[2:]])
    np.testing.assert_array_equal(task.test.labels.numpy(), arrays["t10k-labels-idx1-ubyte"])
    # thermometer on bytes: channel c spikes when the pixel exceeds c * 255 / levels
    np.testing.assert_array_equal(encode_thermometer(np.array([[0, 1, 64, 128, 255]]), 4, 255.0)[0],
                                  [[0, 0, 0, 0], [1, 0, 0, 0], [1, 1, 0, 0], [1, 1, 1, 0], [1, 1, 1, 1]])
    # another pixel order: the same pixels, so the same spike totals
    other = load_task("ps-mnist", data=tmp_path, seed=1, permutation_seed=3, levels=4)
    assert not torch.equal(other.test.spikes, task.test.spikes)
    assert torch.equal(other.test.spikes.sum((1, 2)), task.test.spikes.sum((1, 2)))
    # torchvision's layout root/MNIST/raw is found too
    write_mnist(tmp_path / "tv" / "MNIST" / "raw", np.random.default_rng(0))
    assert len(load_task("ps-mnist", data=tmp_path / "tv").test) == 5


@pytest.mark.parametrize("name,data,match", [
    ("train-images-idx3-ubyte", idx_bytes(np.zeros((12, 28, 28)), magic=0x0801),
     "has magic number 0x00000801, not 0x00000803"),
    ("t10k-labels-idx1-ubyte", idx_bytes(np.zeros(5), magic=0x0D01), "magic number 0x00000d01"),
    ("train-labels-idx1-ubyte", idx_bytes(np.zeros(12))[:-1],
     r"holds 11 bytes of data but its header \(12,\) needs 12"),
    ("train-images-idx3-ubyte", b"\x00\x00\x08", "too short for an idx header"),
    ("train-labels-idx1-ubyte", idx_bytes(np.zeros(11)),
     "holds 12 images but .*train-labels-idx1-ubyte holds 11 labels"),
    ("t10k-images-idx3-ubyte", idx_bytes(np.zeros((5, 14, 14))), "14x14 images, not MNIST's 28x28"),
    ("t10k-labels-idx1-ubyte", idx_bytes([1, 2, 10, 0, 0]), "label 10 of sample 2 is not a digit"),
])
def test_malformed_idx_files_are_named(tmp_path, name, data, match):
    write_mnist(tmp_path, np.random.default_rng(0), gz=())
    (tmp_path / name).write_bytes(data)
    with pytest.raises(ValueError, match=match) as err:
        load_task("ps-mnist", data=tmp_path)
    assert name in str(err.value)


def test_mnist_bad_gzip_and_missing_files(tmp_path):
    write_mnist(tmp_path, np.random.default_rng(0), gz=())
    (tmp_path / "t10k-images-idx3-ubyte").unlink()
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(b"not gzip")
    with pytest.raises(ValueError, match=r"t10k-images-idx3-ubyte\.gz is not a readable gzip"):
        load_task("ps-mnist", data=tmp_path)
    (tmp_path / "t10k-images-idx3-ubyte.gz").unlink()
    with pytest.raises(FileNotFoundError, match=r"lacks t10k-images-idx3-ubyte \(nor \.gz\).*"
                                                r"yann\.lecun\.com/exdb/mnist"):
        load_task("ps-mnist", data=tmp_path)
    with pytest.raises(ValueError, match=r"needs the option data=.*yann\.lecun\.com"):
        load_task("ps-mnist")
    with pytest.raises(ValueError, match=r"levels must be in 1\.\.255, not 0"):
        load_task("ps-mnist", data=tmp_path, levels=0)
