"""The delrec command: help, errors, the accuracy comparison."""

import json
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
    result = compare_models("delayed-xor", ["delrec", "feedforward"], [0, 1], tmp_path, epochs=1,
                            hidden=[8], workers=2, progress=False,
                            task_options=dict(train_size=64, val_size=16, test_size=16))
    assert [(r["model"], r["seed"]) for r in result["runs"]] == \
        [("delrec", 0), ("delrec", 1), ("feedforward", 0), ("feedforward", 1)]
    for kind in ("delrec", "feedforward"):
        accs = [r["test_accuracy"] for r in result["runs"] if r["model"] == kind]
        assert result["summary"][kind]["test_accuracy_mean"] == sum(accs) / 2
        assert (tmp_path / f"delayed-xor-{kind}-s1" / "metrics.json").is_file()
    assert result["summary"]["delrec"]["parameters"] > result["summary"]["feedforward"]["parameters"]
    assert "| delrec |" in format_table(result)
    json.dumps(result)
