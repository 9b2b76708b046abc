"""delrec demo on a tiny configuration: every stage runs and the report points at real figures."""

import json
import re

from delrec.cli import main


def test_demo_writes_a_report(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--epochs", "1", "--hidden", "8", "--samples", "3", "--no-synth",
                 "--no-progress", "--task-option", "train_size=32", "--task-option", "val_size=16",
                 "--task-option", "test_size=16", "--onchip-samples", "2", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    cosim = summary["cosim"]
    assert cosim["bit_exact"] and cosim["samples"] == 3
    assert cosim["rtl_accuracy"] == cosim["fixed_accuracy_same_samples"]
    assert cosim["cycles_per_step_mean"] > 0
    page = (out / "report.html").read_text()
    images = re.findall(r'<img src="([^"]+)"', page)
    assert set(images) == {"accuracy.png", "delays.png", "rasters.png", "cycles.png"}
    for name in images:
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "bit-exact" in (out / "report.md").read_text()
    onchip = summary["onchip"]
    # the deployed network itself learned: its sizes, two samples of every-step updates
    assert onchip["bit_exact"] and onchip["samples"] == 2
    assert onchip["build"]["neurons"] == 8 and onchip["build"]["learning"] == "step"
    assert onchip["delays_changed"] > 0 and onchip["readout_weights_changed"] > 0
    assert "On-chip delay learning" in page
