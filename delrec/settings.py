"""Settings given as text: the ``KEY=VALUE`` options of the command line and the experiments.

Plain Python (no torch, no Amaranth): the command line (:mod:`delrec.cli`) and
the golden model's experiment runner (:mod:`delrec.golden.experiments`) both
parse their options with it, so that neither imports the other.
"""

from __future__ import annotations

import argparse
import json

__all__ = ["key_value"]


def key_value(text: str):
    """argparse type of ``KEY=VALUE`` options; VALUE is parsed as JSON when it can be."""
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"Task option must look like KEY=VALUE, not {text!r}")
    key, value = text.split("=", 1)
    try:
        value = json.loads(value)
    except json.JSONDecodeError:
        pass
    return key, value
