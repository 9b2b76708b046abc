"""Accuracy targets (slow: minutes on two cores). Run with ``pytest -m slow``."""

import pytest

from delrec.golden.experiments import compare_models

pytestmark = pytest.mark.slow


def test_delrec_solves_delayed_xor_and_no_delay_network_does_not(tmp_path):
    result = compare_models("delayed-xor", ["delrec", "recurrent"], [0, 1, 2], tmp_path,
                            progress=False)
    delrec = [r["test_accuracy"] for r in result["runs"] if r["model"] == "delrec"]
    assert len(delrec) == 3
    plain = [r["test_accuracy"] for r in result["runs"] if r["model"] == "recurrent"]
    assert min(delrec) >= 0.95, delrec
    assert max(plain) <= min(delrec) - 0.20, (delrec, plain)
