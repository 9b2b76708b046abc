"""Built-in tasks and the time-major dataset interface."""

import numpy as np
import pytest
import torch

from delrec.golden.tasks.base import load_task, make_loader, task_names


def test_registry_and_unknown_task():
    assert {"delayed-xor", "ps-digits"} <= set(task_names())
    with pytest.raises(ValueError, match="Unknown task 'nope'; known tasks: .*delayed-xor"):
        load_task("nope")
    with pytest.raises(ValueError, match=r"Task 'delayed-xor' has no option\(s\) \['gapmin'\]; its options"):
        load_task("delayed-xor", gapmin=3)


@pytest.mark.parametrize("name,inputs,classes,steps", [("delayed-xor", 32, 4, 64),
                                                        ("ps-digits", 8, 10, 64)])
def test_loader_yields_time_major_spikes(name, inputs, classes, steps):
    task = load_task(name)
    assert (task.inputs, task.classes, task.steps) == (inputs, classes, steps)
    x, y = next(iter(make_loader(task.train, 16, shuffle=True, seed=1)))
    assert x.shape == (steps, 16, inputs) and x.dtype == torch.float32
    assert set(x.unique().tolist()) <= {0.0, 1.0}
    assert y.shape == (16,) and y.dtype == torch.int64 and 0 <= y.min() and y.max() < classes
    sizes = [len(task.train), len(task.val), len(task.test)]
    assert min(sizes) > 0


def test_delayed_xor_is_deterministic_and_needs_both_cues():
    a = load_task("delayed-xor", seed=4, train_size=300, val_size=10, test_size=10)
    b = load_task("delayed-xor", seed=4, train_size=300, val_size=10, test_size=10)
    assert torch.equal(a.train.spikes, b.train.spikes) and torch.equal(a.train.labels, b.train.labels)
    c = load_task("delayed-xor", seed=5, train_size=300, val_size=10, test_size=10)
    assert not torch.equal(a.train.spikes, c.train.spikes)


def test_delayed_xor_cue_alone_carries_no_class_information():
    # Reconstruct the generator's draws: the class is (second - first) mod P,
    # so for every first cue all classes are equally likely.
    from delrec.golden.tasks import synthetic

    rng = np.random.default_rng(0)
    pats = synthetic._patterns(rng, 4, 32, 8)
    spikes, labels = synthetic._generate(rng, pats, 4000, 64, (30, 36), 4, 0.8, 0.0)
    evidence = np.einsum("ntc,pc->ntp", spikes.astype(float), pats.astype(float))
    first = _first_cue(evidence).argmax(1)
    for cue in range(4):
        counts = np.bincount(labels[first == cue], minlength=4)
        assert counts.min() > 0.8 * counts.mean(), counts


def _first_cue(evidence):
    # evidence [n, T, P]; the first step with any cue spike names the first cue
    active = evidence.sum(-1) > 0
    t0 = active.argmax(1)
    return evidence[np.arange(len(t0)), t0]


def test_ps_digits_permutation_is_seeded():
    a = load_task("ps-digits", permutation_seed=0)
    b = load_task("ps-digits", permutation_seed=1)
    assert torch.equal(a.train.labels, b.train.labels)  # same split
    assert not torch.equal(a.train.spikes, b.train.spikes)  # other pixel order
    # The same pixels in another order: per-sample spike counts agree.
    assert torch.equal(a.train.spikes.sum((1, 2)), b.train.spikes.sum((1, 2)))


@pytest.mark.parametrize("name,options,match", [
    ("delayed-xor", dict(gap_min=10, gap_max=5), r"0 < gap_min <= gap_max, not \[10, 5\]"),
    ("delayed-xor", dict(steps=20), "20 steps cannot hold a gap of 36"),
    ("delayed-xor", dict(patterns=5, cue_channels=8), "5 cue patterns of 8 channels need at least 40"),
    ("ps-digits", dict(levels=0), "levels must be in 1..16, not 0"),
])
def test_bad_task_options(name, options, match):
    with pytest.raises(ValueError, match=match):
        load_task(name, **options)
