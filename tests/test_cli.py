"""The delrec command: help, errors, the accuracy comparison."""

import json

import pytest
import subprocess
import sys

from delrec.cli import main
from delrec.golden.experiments import compare_models, format_table


def test_help_lists_subcommands():
    proc = subprocess.run([sys.executable, "-m", "delrec", "--help"], capture_output=True, text=True)
    assert proc.returncode == 0
    for word in ("train", "eval", "bench"):
        assert word in proc.stdout
    proc = subprocess.run([sys.executable, "-m", "delrec", "bench", "--help"], capture_output=True, text=True)
    assert "golden" in proc.stdout and "accuracy" in proc.stdout


def test_unknown_task_and_bad_option_are_clear_errors(capsys):
    assert main(["train", "--task", "nope"]) == 2
    assert "Unknown task 'nope'" in capsys.readouterr().err
    assert main(["train", "--task-option", "gap_min=50", "--epochs", "1"]) == 2
    assert "gap_min <= gap_max, not [50, 36]" in capsys.readouterr().err
    assert main(["train", "--hidden", "0", "--epochs", "1"]) == 2
    assert "Hidden layer sizes must be positive integers, not [0]" in capsys.readouterr().err


def test_compare_models_over_seeds(tmp_path):
    options = dict(train_size=64, val_size=16, test_size=16)
    splits = {"near": dict(gap_min=30, gap_max=32), "far": dict(gap_min=40, gap_max=44, steps=70)}
    run = lambda: compare_models("delayed-xor", ["delrec", "feedforward"], [0, 1], tmp_path,  # noqa: E731
                                 task_options=options, splits=splits,
                                 overrides=dict(epochs=1, hidden=[8]), workers=2, progress=False)
    result = run()
    assert [(r["split"], r["model"], r["seed"]) for r in result["runs"]] == [
        (split, model, seed) for split in ("near", "far") for model in ("delrec", "feedforward")
        for seed in (0, 1)]
    for split in splits:
        for kind in ("delrec", "feedforward"):
            accs = [r["test_accuracy"] for r in result["runs"] if r["model"] == kind and r["split"] == split]
            assert result["summary"][split][kind]["test_accuracy_mean"] == sum(accs) / 2
            assert (tmp_path / f"delayed-xor-{split}-{kind}-s1" / "metrics.json").is_file()
    near = result["summary"]["near"]
    assert near["delrec"]["parameters"] > near["feedforward"]["parameters"]
    table = format_table(result)
    assert "| delrec |" in table and "near" in table and "far" in table
    json.dumps(result)
    # A second call reuses the finished runs instead of training again.
    stamp = (tmp_path / "delayed-xor-far-delrec-s0" / "metrics.json").stat().st_mtime_ns
    assert run()["runs"] == result["runs"]
    assert (tmp_path / "delayed-xor-far-delrec-s0" / "metrics.json").stat().st_mtime_ns == stamp


def test_compare_online_variants(tmp_path):
    options = dict(train_size=32, val_size=16, test_size=16)
    run = lambda: compare_models("delayed-xor", ["delays", "weights-only", "delays-fixed-point"],  # noqa: E731
                                 [0], tmp_path, task_options=options,
                                 overrides=dict(epochs=1, hidden=6), workers=1, progress=False,
                                 learning="three-factor")
    result = run()
    assert [r["model"] for r in result["runs"]] == ["delays", "weights-only", "delays-fixed-point"]
    stored = json.loads((tmp_path / "delayed-xor-default-online-weights-only-s0" / "metrics.json")
                        .read_text())
    assert stored["online_config"]["learn_delays"] is False
    fixed = json.loads((tmp_path / "delayed-xor-default-online-delays-fixed-point-s0" / "metrics.json")
                       .read_text())
    assert fixed["arithmetic"] == "fixed"
    stamp = (tmp_path / "delayed-xor-default-online-delays-s0" / "metrics.json").stat().st_mtime_ns
    assert run()["runs"] == result["runs"]  # reused
    assert (tmp_path / "delayed-xor-default-online-delays-s0" / "metrics.json").stat().st_mtime_ns == stamp
    with pytest.raises(ValueError, match="Model must be one of .* for three-factor learning, not 'delrec'"):
        compare_models("delayed-xor", ["delrec"], [0], tmp_path, learning="three-factor")


def test_quantize_a_trained_checkpoint(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--epochs", "1", "--hidden", "16", "--no-progress", "--out", str(out),
                 "--task-option", "train_size=64", "--task-option", "val_size=16",
                 "--task-option", "test_size=32"]) == 0
    capsys.readouterr()
    assert main(["quantize", str(out / "checkpoint.pt"), "--no-progress"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["samples"] == 32 and 0 <= report["fixed_accuracy"] <= 1
    assert report["spec"]["weight_bits"] == 8 and report["theta"] >= 1
    from delrec.image import FixedNetwork
    net = FixedNetwork.load(out / "fixed.npz")
    assert net.neurons == 16 and net.meta["task"] == "delayed-xor"
    assert main(["quantize", str(tmp_path / "missing.pt")]) == 2
    assert "does not exist" in capsys.readouterr().err

    # the trained network keeps learning on the RTL core, from the command line, figures written
    onchip = tmp_path / "onchip"
    assert main(["learn-on-core", "--from", str(out / "checkpoint.pt"), "--samples", "2", "--eval-samples", "2",
                 "--out", str(onchip), "--no-progress"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["bit_exact"] and report["task"] == "delayed-xor"
    assert report["cycles_per_step_learning"] > report["cycles_per_step_inference"]
    assert {"metrics.json", "learning.png", "learned.npz"} <= {p.name for p in onchip.iterdir()}
    learned = FixedNetwork.load(onchip / "learned.npz")
    assert learned.neurons == 16 and learned.input_delays is not None
